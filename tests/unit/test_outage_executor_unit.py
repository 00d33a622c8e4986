"""Bad days at Tango, one run at a time (real Redis, a scripted Tango): calls that never
reached Tango wait instead of failing, the fleet marks Tango down once, one call per interval
tests it while the others wait without calling, and patience has an end."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.support.scripted_tango import CREATED, ScriptedTango, executor_with
from tests.support.window import window_of
from worker.core.conditions import TANGO_CREDENTIALS_REFUSED, TANGO_UNREACHABLE
from worker.resend.executor import Done
from worker.runtime import Runtime
from worker.state.metrics_export import build_registry
from worker.state.outage import OutageReason
from worker.state.records import ResendRecord, ResendStatus
from worker.tango.auth import TokenUnavailable
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoPermanentError,
    TangoTransientError,
)

URL = "http://tango.example:8080/raas/v2/orders/RA251201-0001-01/resends"


@pytest.fixture
def runtime(make_runtime) -> Runtime:  # type: ignore[no-untyped-def]
    return make_runtime(
        REDIS_KEY_PREFIX="outage-test",
        RESEND_COOLDOWN_SECONDS="30",
        TANGO_RATE_LIMIT="0",
        TANGO_OUTAGE_RETRY_MAX_SECONDS="4",
        TANGO_OUTAGE_PATIENCE_SECONDS="600",
    )


@pytest.fixture(autouse=True)
def fresh_conditions() -> Iterator[None]:
    for condition in (TANGO_UNREACHABLE, TANGO_CREDENTIALS_REFUSED):
        condition.clear()
    yield
    for condition in (TANGO_UNREACHABLE, TANGO_CREDENTIALS_REFUSED):
        condition.clear()


def request_for(runtime: Runtime, number: int) -> str:
    """A request for an order of its own (no request waits for another's turn)."""
    now = runtime.clock.now()
    record = ResendRecord(
        id=f"req-{number}",
        reference_order_id=f"RA251201-{number:04d}-01",
        request={"newEtid": "E000001"},
        created_at=now,
        updated_at=now,
    )
    runtime.records.create(record, None, 60, lease_seconds=5)
    return record.id


def refused() -> TangoTransientError:
    error = TangoTransientError(
        "ConnectionError: no answer from Tango (Connection refused)", ambiguous=False
    )
    error.url = URL
    return error


def stored(runtime: Runtime, request_id: str) -> ResendRecord:
    record = runtime.records.get(request_id)
    assert record is not None
    return record


def test_unreachable_tango_marks_the_fleet_down_and_the_request_waits(runtime: Runtime) -> None:
    """Given a refused connection; Then the request waits (its own status, reason with the
    outage's start), uses up no retry, gives its window back; Tango is marked down."""
    request_id = request_for(runtime, 1)

    done = executor_with(runtime, ScriptedTango(refused())).run(request_id)

    assert done == Done(ResendStatus.WAITING)
    record = stored(runtime, request_id)
    assert record.reason is not None
    assert record.reason.startswith("waiting: Tango unreachable since ")
    assert "Connection refused" in record.reason
    assert (record.transient_failures, record.outage_failures) == (0, 1)
    assert record.first_tried_at is not None
    assert window_of(runtime).holder(record.reference_order_id) is None
    outage = runtime.outage.read()
    assert outage is not None and outage.reason is OutageReason.UNREACHABLE
    assert outage.url == URL
    assert TANGO_UNREACHABLE.active


def test_while_marked_down_one_call_per_interval_tests_tango_and_the_rest_wait(
    runtime: Runtime,
) -> None:
    first, tester, waiter = (request_for(runtime, n) for n in (1, 2, 3))
    tango = ScriptedTango(refused(), refused())
    executor_with(runtime, tango).run(first)  # marks Tango down

    assert executor_with(runtime, tango).run(tester) == Done(ResendStatus.WAITING)
    assert executor_with(runtime, tango).run(waiter) == Done(ResendStatus.WAITING)

    assert len(tango.calls) == 2, "the third request waited without calling"
    waiting = stored(runtime, waiter)
    assert waiting.attempts == 0
    assert waiting.reason is not None and waiting.reason.startswith("waiting: Tango unreachable")
    gauges = build_registry(runtime.redis, runtime.keys, "q", runtime.outage)
    assert gauges.get_sample_value("tango_resend_tango_up") == 0.0
    counted = gauges.get_sample_value("tango_resend_waiting_on_outage", {"reason": "unreachable"})
    assert counted == 3.0


def test_the_test_call_that_gets_through_clears_the_mark(runtime: Runtime) -> None:
    first, tester = request_for(runtime, 1), request_for(runtime, 2)
    tango = ScriptedTango(refused(), CREATED, CREATED)
    executor_with(runtime, tango).run(first)

    assert executor_with(runtime, tango).run(tester) == Done(ResendStatus.SENT)

    assert runtime.outage.read() is None
    assert not TANGO_UNREACHABLE.active
    waited = stored(runtime, first)
    waited.next_attempt_at = None  # its wait is over
    assert runtime.records.save(waited, 0)
    assert executor_with(runtime, tango).run(first) == Done(ResendStatus.SENT)
    gauges = build_registry(runtime.redis, runtime.keys, "q", runtime.outage)
    assert gauges.get_sample_value("tango_resend_tango_up") == 1.0
    assert gauges.get_sample_value("tango_resend_tango_last_success_timestamp_seconds")
    counted = gauges.get_sample_value("tango_resend_waiting_on_outage", {"reason": "unreachable"})
    assert counted == 0.0


def test_refused_credentials_wait_and_log_an_error_naming_the_settings(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Given 401 after the renewal too (Basic credentials refused); Then ERROR once, naming
    TANGO_PLATFORM_NAME and TANGO_PLATFORM_KEY; the request waits on refused credentials."""
    caplog.set_level(logging.INFO)
    first, second = request_for(runtime, 1), request_for(runtime, 2)
    unauthorized = TangoAuthenticationError("Unauthorized", status=401, i18n_key="401.001")
    tango = ScriptedTango(unauthorized, unauthorized, unauthorized, unauthorized)

    assert executor_with(runtime, tango).run(first) == Done(ResendStatus.WAITING)
    assert executor_with(runtime, tango).run(second) == Done(ResendStatus.WAITING)

    reason = stored(runtime, first).reason
    assert reason is not None and reason.startswith("waiting: credentials refused since ")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "TANGO_PLATFORM_NAME and TANGO_PLATFORM_KEY" in errors[0]
    outage = runtime.outage.read()
    assert outage is not None and outage.reason is OutageReason.CREDENTIALS_REFUSED


def test_a_request_out_of_patience_fails_naming_the_url_and_the_last_error(
    runtime: Runtime,
) -> None:
    request_id = request_for(runtime, 1)
    record = stored(runtime, request_id)
    record.first_tried_at = runtime.clock.timestamp() - 601
    assert runtime.records.save(record, 0)

    done = executor_with(runtime, ScriptedTango(refused())).run(request_id)

    assert done == Done(ResendStatus.FAILED)
    reason = stored(runtime, request_id).reason
    assert reason is not None
    assert URL in reason and "Connection refused" in reason
    assert "TANGO_OUTAGE_PATIENCE_SECONDS" in reason


def test_a_waiting_request_out_of_patience_fails_without_calling(runtime: Runtime) -> None:
    first, late = request_for(runtime, 1), request_for(runtime, 2)
    tango = ScriptedTango(refused())
    executor_with(runtime, tango).run(first)
    runtime.outage.take_test(60)  # another worker tests Tango this interval
    record = stored(runtime, late)
    record.first_tried_at = runtime.clock.timestamp() - 601
    assert runtime.records.save(record, 0)

    assert executor_with(runtime, tango).run(late) == Done(ResendStatus.FAILED)

    assert len(tango.calls) == 1
    reason = stored(runtime, late).reason
    assert reason is not None and URL in reason


def test_a_permanent_answer_still_fails_at_once_and_clears_the_mark(runtime: Runtime) -> None:
    first, unknown = request_for(runtime, 1), request_for(runtime, 2)
    tango = ScriptedTango(
        refused(), TangoPermanentError("Unknown order", status=404, i18n_key="404.017")
    )
    executor_with(runtime, tango).run(first)

    assert executor_with(runtime, tango).run(unknown) == Done(ResendStatus.FAILED)
    assert runtime.outage.read() is None, "Tango answered: it is reachable"


def test_503_and_429_wait_without_marking_the_fleet(runtime: Runtime) -> None:
    busy, limited = request_for(runtime, 1), request_for(runtime, 2)
    tango = ScriptedTango(
        TangoTransientError("Service Unavailable", status=503),
        TangoTransientError("Too Many Requests", status=429, retry_after=1.0),
    )

    assert executor_with(runtime, tango).run(busy) == Done(ResendStatus.WAITING)
    assert executor_with(runtime, tango).run(limited) == Done(ResendStatus.WAITING)

    reason = stored(runtime, busy).reason
    assert reason is not None and reason.startswith("waiting: Tango is busy")
    assert stored(runtime, limited).transient_failures == 0
    assert runtime.outage.read() is None


def test_an_oauth_client_refused_by_the_token_endpoint_waits_on_refused_credentials(
    runtime: Runtime,
) -> None:
    """Given the token endpoint answering 401 (wrong TANGO_CLIENT_SECRET); Then no call is
    made, the request waits on refused credentials, and the fleet marks Tango down."""
    request_id = request_for(runtime, 1)
    tango = ScriptedTango()
    tango.token_error = TokenUnavailable(
        "token request refused: Unauthorized", status=401, retry_after=5.0
    )

    assert executor_with(runtime, tango).run(request_id) == Done(ResendStatus.WAITING)

    assert tango.calls == []
    record = stored(runtime, request_id)
    assert record.reason is not None
    assert record.reason.startswith("waiting: credentials refused since ")
    assert record.next_attempt_at is not None
    wait = (record.next_attempt_at - runtime.clock.now()).total_seconds()
    assert wait <= 4.0, "capped at TANGO_OUTAGE_RETRY_MAX_SECONDS"
    outage = runtime.outage.read()
    assert outage is not None and outage.reason is OutageReason.CREDENTIALS_REFUSED
