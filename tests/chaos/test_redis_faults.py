"""Redis drops every client connection mid-run, then restarts (append-only file on): the
workers and the webhook receiver recover by themselves, nothing accepted is lost, and while
Redis is down the receiver answers 503 (never 500, never 202).

Each test runs a redis-server of its own; the shared Redis is never touched.
"""

from __future__ import annotations

import base64
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import redis
import requests

from tests.support.calls import duplicate_sends, first_sends, resend_calls, windows_respected
from tests.support.findings import chaos_seed, report
from tests.support.processes import WebFactory, WebProcess, WorkerFactory, WorkerProcess
from tests.support.receiver import post_webhook
from tests.support.records import all_final, wait_all_final
from tests.support.redis_server import RedisServer
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import EnqueueError, enqueue_resend, get_resend
from worker.sandbox import SandboxControl
from worker.state.keys import RedisKeys

pytestmark = pytest.mark.chaos

SECRET = "whsec_" + base64.b64encode(b"chaos-webhook-secret-0123456789").decode()
WINDOW = 1.5
RECORDING_SLACK = 2.0


class Load:
    """Requests of known bodies, through the producer API and the receiver, in FIFO order."""

    def __init__(self, orders: list[str], web: WebProcess) -> None:
        self.orders, self.web = orders, web
        self.expected: dict[str, tuple[str, str]] = {}  # request id -> (order, etid)
        self.sequence: dict[str, list[str]] = defaultdict(list)  # order -> etids in order
        self.statuses: list[int] = []
        self._n = 0

    def _next_etid(self) -> str:
        self._n += 1
        return f"E{self._n:06d}"

    def via_api(self, order: str) -> None:
        body = self._next_etid()
        self.expected[enqueue_resend(order, new_etid=body)] = (order, body)
        self.sequence[order].append(body)

    def via_webhook(self, order: str, deadline: float = 45.0) -> None:
        """Post until accepted: a 503 means "retry", anything else but 202 is a failure."""
        body = self._next_etid()
        payload = {"referenceOrderID": order, "newEtid": body}
        webhook_id = f"msg_{body}"
        give_up = time.monotonic() + deadline
        while True:
            try:
                answer = post_webhook(self.web.url, SECRET, payload, webhook_id)
            except requests.RequestException:
                answer = None
            if answer is not None:
                self.statuses.append(answer.status_code)
                assert answer.status_code in (202, 503), (answer.status_code, answer.text)
                if answer.status_code == 202:
                    self.expected[answer.json()["id"]] = (order, body)
                    self.sequence[order].append(body)
                    return
            assert time.monotonic() < give_up, "the receiver did not recover"
            time.sleep(0.2)

    def wave(self) -> None:
        for order in self.orders:
            self.via_api(order)
            self.via_webhook(order)


def check_outcome(
    load: Load, control: SandboxControl, faults_at: list[float]
) -> tuple[int, list[Any]]:
    """Every accepted request sent, windows kept, FIFO kept; duplicates counted."""
    ids = list(load.expected)
    done = wait_all_final(ids, timeout=90)
    assert {r.status.value for r in done} == {"sent"}, [r.reason for r in done]
    duplicates, unexplained = duplicate_sends(
        load.expected, resend_calls(control), faults_at, RECORDING_SLACK
    )
    for order in load.orders:
        calls = resend_calls(control, order)
        assert not windows_respected(calls, WINDOW), order
        assert first_sends(calls) == load.sequence[order], f"per-order FIFO for {order}"
    return duplicates, unexplained


def orders_in(control: SandboxControl, series: str, number: int, /, **fault: Any) -> list[str]:
    """`number` orders RA251204-SERIES-NN the sandbox knows, each with `fault` if given."""
    orders = [f"RA251204-{series}-{n:02d}" for n in range(number)]
    for order in orders:
        control.add_order(order)
        if fault:
            control.inject_fault(order, **fault)
    return orders


StartOn = Callable[..., tuple[WorkerProcess, Load]]


@pytest.fixture
def start_on_own_redis(
    own_redis: RedisServer,
    configure: Configure,
    start_worker: WorkerFactory,
    start_web: WebFactory,
) -> StartOn:
    """start(orders, **settings): a worker and the receiver on the test's own Redis, and the
    load for `orders` through both."""

    def start(orders: list[str], **settings: str) -> tuple[WorkerProcess, Load]:
        env = configure(redis_url=own_redis.url(), WEBHOOK_SECRET=SECRET, **settings)
        worker = start_worker(env, "w1", concurrency=6)
        return worker, Load(orders, start_web(env))

    return start


def test_connections_dropped_mid_run_everyone_recovers_without_a_restart(
    own_redis: RedisServer, control: SandboxControl, start_on_own_redis: StartOn
) -> None:
    # Every wait is parked, so the scheduler (its pub/sub connection included) must recover.
    orders = orders_in(control, "9101", 5, delay_seconds=0.3, delay_phase="after", count=3)
    worker, load = start_on_own_redis(
        orders,
        TANGO_TIMEOUT_SECONDS="1.5",
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    web = load.web
    seed = chaos_seed()
    rng = random.Random(seed)

    load.wave()
    drops: list[float] = []
    for round_number in range(3):
        time.sleep(rng.uniform(0.2, 0.8))  # a random moment under load
        drops.append(time.time())
        killed = own_redis.kill_clients("normal") + own_redis.kill_clients("pubsub")
        assert killed > 0
        if round_number == 1:
            load.wave()
    load.wave()

    duplicates, unexplained = check_outcome(load, control, drops)
    assert worker.process.poll() is None and web.process.poll() is None, "nobody restarted"
    assert "Traceback" not in web.log()
    report(
        "chaos",
        f"client kill: seed={seed} requests={len(load.expected)} webhook answers="
        f"{load.statuses.count(202)}x202 {load.statuses.count(503)}x503 duplicates={duplicates}",
    )
    assert unexplained == []


def outage_checks(web: WebProcess, order: str) -> float:
    """While Redis is down: the receiver answers 503 with Retry-After, health says 503, the
    producer API raises EnqueueError. Returns how long the 503 took."""
    started = time.monotonic()
    answer = post_webhook(web.url, SECRET, {"referenceOrderID": order}, "msg_while_down")
    took = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert answer.headers.get("retry-after") == "5"
    assert requests.get(f"{web.url}/healthz", timeout=30).status_code == 503
    with pytest.raises(EnqueueError):
        enqueue_resend(order, new_etid="E999999")
    return took


def test_redis_restart_receiver_answers_503_then_recovers_and_parked_work_survives(
    own_redis: RedisServer, control: SandboxControl, start_on_own_redis: StartOn
) -> None:
    """Redis restarts while requests wait parked in it (no call in flight): the receiver says
    503 meanwhile, and afterwards every accepted request, parked ones included, is sent."""
    window = 4.0
    control.configure(cooldown_seconds=window)
    orders = orders_in(control, "9201", 4)
    worker, load = start_on_own_redis(
        orders,
        RESEND_COOLDOWN_SECONDS=str(window),
    )
    web = load.web
    load.wave()  # two per order: the first is sent, the second parked for the window

    first_ids = [
        request_id
        for request_id, (order, body) in load.expected.items()
        if body == load.sequence[order][0]
    ]
    wait_all_final(first_ids, timeout=30)
    wait_for(
        lambda: all(c["status"] is not None for c in control.calls()),
        timeout=10,
        what="no call in flight",
    )
    noticed_before = worker.log().count("Redis is unreachable")
    down_at = time.time()
    own_redis.stop()  # SIGTERM: the append-only file is synced, the data survives
    refused_in = outage_checks(web, orders[0])
    # Stay down until the worker has noticed (one line for the whole outage, not one per
    # reconnection: tests/chaos/test_redis_down_logs.py), and long enough for its consumer
    # to fail a reconnection or two (Celery tries again every 2 s).
    wait_for(
        lambda: worker.log().count("Redis is unreachable") > noticed_before,
        timeout=30,
        what="the worker to notice Redis is gone",
    )
    wait_for(lambda: time.time() - down_at > 5.0, timeout=10, what="five seconds of outage")
    own_redis.start()
    up_at = time.time()

    load.wave()  # the receiver and the producer API recover by themselves
    duplicates, unexplained = check_outcome(load, control, [down_at, up_at])
    assert worker.process.poll() is None and web.process.poll() is None, "nobody restarted"
    assert "Traceback" not in web.log()
    report(
        "chaos",
        f"redis restart (idle workers): down {up_at - down_at:.1f}s, 503 answered in "
        f"{refused_in:.2f}s, requests={len(load.expected)}, webhook 503s after restart="
        f"{load.statuses.count(503)}, duplicates={duplicates}",
    )
    assert duplicates == 0 and unexplained == []


def test_redis_restart_with_calls_in_flight_workers_survive_and_nothing_is_lost(
    own_redis: RedisServer, control: SandboxControl, start_on_own_redis: StartOn
) -> None:
    orders = orders_in(control, "9301", 4, delay_seconds=1.0, delay_phase="after")
    worker, load = start_on_own_redis(
        orders,
        TANGO_TIMEOUT_SECONDS="2",
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    web = load.web
    load.wave()
    wait_for(
        lambda: any(c["status"] is None for c in control.calls()),
        timeout=15,
        what="calls in flight",
    )
    down_at = time.time()
    own_redis.stop()
    outage_checks(web, orders[0])
    own_redis.start()
    up_at = time.time()

    def alive_and_done() -> Any:
        assert worker.process.poll() is None, f"the worker exited:\n{worker.log()[-3000:]}"
        return all_final(list(load.expected))

    load.wave()
    wait_for(alive_and_done, timeout=90, interval=0.1, what="all final, the worker alive")
    duplicates, unexplained = check_outcome(load, control, [down_at, up_at])
    report("chaos", f"redis restart (calls in flight): duplicates={duplicates}")
    assert unexplained == []


# --- data loss: what the append-only file's "everysec" can lose on a host crash ---------------


def test_a_lost_window_costs_one_cooldown_answer_never_a_resend_inside_tangos_window(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    """The window re-anchored after a resend is lost (the last second of writes): the next
    request meets Tango's own cooldown once (403.005), waits out Tango's window, then goes."""
    order, window = "RA251204-9401-01", 4.0  # long enough to still be open on a loaded host
    env = configure(RESEND_COOLDOWN_SECONDS=str(window))
    control.configure(cooldown_seconds=window)
    control.add_order(order)
    start_worker(env)
    first = enqueue_resend(order, new_etid="E000001")
    wait_all_final([first], timeout=20)
    test_db.delete(RedisKeys(env["REDIS_KEY_PREFIX"]).order_window(order))  # the lost write

    second = enqueue_resend(order, new_etid="E000002")
    (record,) = wait_all_final([second], timeout=20)

    assert record.status.value == "sent" and record.cooldown_deferrals == 1
    calls = resend_calls(control, order)
    assert [c["status"] for c in calls] == [201, 403, 201]
    assert calls[2]["received_at"] - calls[0]["received_at"] >= window


def test_a_lost_record_drops_its_task_without_calling_tango(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    """A request accepted (202) whose record was lost while its task message survived is
    dropped: no call, a warning in the log. The sender got a 202 for a request that is gone."""
    order = "RA251204-9402-01"
    env = configure()
    control.add_order(order)
    request_id = enqueue_resend(order)  # no worker yet: the task waits in the queue
    test_db.delete(RedisKeys(env["REDIS_KEY_PREFIX"]).record(request_id))  # the lost write
    worker = start_worker(env)

    wait_for(
        lambda: "has no record; took it off its queue" in worker.log(),
        timeout=20,
        what="the task dropped",
    )
    assert request_id in worker.log()
    assert get_resend(request_id) is None
    assert resend_calls(control, order) == []
