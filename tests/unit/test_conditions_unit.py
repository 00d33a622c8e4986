"""Lasting conditions (worker/core/conditions.py): one line when one starts, one a minute
while it lasts, one when it ends; and Celery's broker-loss lines routed into them."""

from __future__ import annotations

import logging
import socket

import pytest
import redis

from worker.core.conditions import REDIS_UNREACHABLE, TANGO_CREDENTIALS_REFUSED, Condition
from worker.queueing.broker_logs import CONSUMER_LOGGER, BrokerLossFilter
from worker.state.keys import RedisKeys
from worker.state.metrics_export import build_registry
from worker.state.outage import TangoOutage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(record.levelno, record.getMessage()) for record in caplog.records]


def test_a_condition_logs_once_then_once_a_minute_then_its_end(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Given Redis failing every second for 150 s; Then 1 start line (ERROR, with advice),
    2 "still" lines (one a minute) and 1 end line: 4 lines, not 150 tracebacks."""
    caplog.set_level(logging.INFO)
    condition = Condition(
        logging.getLogger("t.conditions"),
        "Redis is unreachable",
        "Redis answers again",
        clock=clock,
    )

    assert condition.report("ConnectionError: refused", "check REDIS_URL") is True
    for _ in range(150):
        clock.now += 1
        assert condition.report("ConnectionError: refused") is False
    assert condition.active
    assert condition.clear() is True
    assert condition.clear() is False  # ended once

    logged = lines(caplog)
    assert len(logged) == 4
    assert logged[0][0] == logging.ERROR
    assert "Redis is unreachable: ConnectionError: refused; check REDIS_URL" in logged[0][1]
    assert [level for level, _ in logged[1:3]] == [logging.WARNING, logging.WARNING]
    assert "for 60s now" in logged[1][1] and "59 more failure(s)" in logged[1][1]
    assert logged[3][1] == "Redis answers again after 150s (151 failure(s) meanwhile)"
    assert not condition.active


def test_a_condition_that_returns_logs_its_start_again(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    condition = Condition(
        logging.getLogger("t.conditions"), "Tango is unreachable", "Tango answers", clock=clock
    )
    condition.report("refused")
    condition.clear()
    clock.now += 5
    assert condition.report("refused") is True
    assert condition.state().failures == 1
    assert len(lines(caplog)) == 3


def test_the_consumers_broker_loss_lines_become_one_condition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Celery's "Cannot connect to redis://…" ERROR per reconnection, and its traceback on
    the loss, are dropped and reported to the process's Redis condition instead."""
    REDIS_UNREACHABLE.clear()
    caplog.set_level(logging.INFO)
    consumer = logging.getLogger(CONSUMER_LOGGER)
    broker_filter = BrokerLossFilter()
    consumer.addFilter(broker_filter)
    try:
        try:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        except ConnectionError:
            consumer.warning(
                "consumer: Connection to broker lost. Trying to re-establish the connection...",
                exc_info=True,
            )
        for attempt in range(5):
            consumer.error(
                "consumer: Cannot connect to %s: %s.\n%s",
                "redis://:**@127.0.0.1:6379/0",
                "Error 111 connecting to 127.0.0.1:6379. Connection refused.",
                f"Trying again in {attempt * 2}.00 seconds... ({attempt}/100)",
            )
        consumer.info("consumer: something else")
    finally:
        consumer.removeFilter(broker_filter)
        active = REDIS_UNREACHABLE.active
        REDIS_UNREACHABLE.clear()

    messages = [record.getMessage() for record in caplog.records]
    assert active
    assert not any("Cannot connect" in message for message in messages)
    assert not any(record.exc_info for record in caplog.records if record.name == CONSUMER_LOGGER)
    assert sum("Redis is unreachable: broker:" in message for message in messages) == 1
    assert "consumer: something else" in messages


def test_with_redis_down_the_health_gauges_answer_from_the_processs_memory() -> None:
    """Given no Redis at all and this process having seen Tango refuse our credentials;
    Then a scrape still answers: redis_up 0, tango_up 0, the outage's reason, and Tango's
    last success as this process saw it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = redis.Redis(port=port, socket_connect_timeout=0.5, decode_responses=True)
    outage = TangoOutage(nowhere, RedisKeys("nowhere"))
    outage.last_success = 1764979200.0
    registry = build_registry(nowhere, RedisKeys("nowhere"), "q", outage)
    TANGO_CREDENTIALS_REFUSED.report("401 at http://tango.example/raas/v2")
    try:
        values = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in registry.collect()
            for sample in family.samples
        }
    finally:
        TANGO_CREDENTIALS_REFUSED.clear()
        REDIS_UNREACHABLE.clear()

    assert values[("tango_resend_redis_up", ())] == 0.0
    assert values[("tango_resend_tango_up", ())] == 0.0
    assert values[("tango_resend_tango_outage", (("reason", "credentials_refused"),))] == 1.0
    assert values[("tango_resend_tango_outage", (("reason", "unreachable"),))] == 0.0
    assert values[("tango_resend_tango_last_success_timestamp_seconds", ())] == 1764979200.0
    assert values[("tango_resend_waiting_on_outage", (("reason", "unreachable"),))] == 0.0
