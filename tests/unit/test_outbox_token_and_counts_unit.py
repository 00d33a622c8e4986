"""Outcome callbacks from the outbox, the fleet's OAuth token when its endpoint fails, and outcomes
counted in the step that stores them: against Redis (the second review's findings)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import requests

from tests.support.metrics import stored_counts
from tests.support.runtime import RuntimeFactory
from tests.support.scripted_tango import (
    CREATED,
    ORDER,
    ScriptedTango,
    executor_with,
    new_request,
)
from tests.support.window import window_of
from worker.queueing.scheduler import DueReleaser
from worker.resend.callbacks import CLAIM_LEASE_SECONDS, OutcomeDeliverer
from worker.resend.executor import Done
from worker.runtime import Runtime
from worker.state.records import PROMOTE_MARGIN_SECONDS, ResendStatus
from worker.tango.auth import TokenUnavailable

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def runtime(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime(
        REDIS_KEY_PREFIX="issue17",
        RESEND_COOLDOWN_SECONDS="30",
        TANGO_RATE_LIMIT="0",
        RESEND_MAX_RETRIES="2",
        RESULT_WEBHOOK_URL=HOOK,
        RESULT_WEBHOOK_SECRET="whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3",
        RESULT_WEBHOOK_MAX_ATTEMPTS="3",
    )


def metrics(runtime: Runtime) -> dict[str, float]:
    return stored_counts(runtime.redis, runtime.keys)


def finished_request(runtime: Runtime, request_id: str = "req-1") -> None:
    """A request sent (the first of its order) or failed (later ones): a callback is owed."""
    record = new_request(runtime, request_id)
    if window_of(runtime).holder(ORDER) is None:
        executor = executor_with(runtime, ScriptedTango(CREATED))
        assert executor.run(request_id) == Done(ResendStatus.SENT)
        return
    record.status, record.reason = ResendStatus.FAILED, "refused"
    assert runtime.records.finish(record, PROMOTE_MARGIN_SECONDS)


class Answers(requests.Session):
    """A callback endpoint answering from a list; `during` runs inside a POST."""

    def __init__(self, *statuses: int) -> None:
        super().__init__()
        self.statuses = list(statuses)
        self.posts = 0
        self.during: Any = None

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.posts += 1
        if self.during is not None:
            self.during()
        response = requests.Response()
        response.status_code = self.statuses.pop(0)
        return response


# --- 2. OAuth: a broken token endpoint never fails a request ---------------------------------


def test_a_broken_token_endpoint_makes_requests_wait_never_fail(runtime: Runtime) -> None:
    """Given the token endpoint answers 404 (a mistyped TANGO_TOKEN_URL), a request retries
    with backoff well past RESEND_MAX_RETRIES without failing, without using its retries and
    without touching the window; once the endpoint is fixed, it is sent."""
    new_request(runtime)
    tango = ScriptedTango(CREATED)
    tango.token_error = TokenUnavailable("token request refused: 404", status=404, retry_after=5)
    executor = executor_with(runtime, tango)
    for failures in range(1, 6):
        assert tango.token_error is not None
        tango.token_error.failures = failures  # type: ignore[attr-defined]
        assert executor.run("req-1") == Done(ResendStatus.RETRYING)
        record = runtime.records.get("req-1")
        assert record is not None and record.status is ResendStatus.RETRYING
        assert record.transient_failures == 0 and "OAuth token" in (record.reason or "")
        assert record.next_attempt_at is not None
        wait = (record.next_attempt_at - runtime.clock.now()).total_seconds()
        assert wait >= 4.9  # at least the failure cache; grows with the failures
        assert window_of(runtime).holder(ORDER) is None and tango.calls == []
        # Due again now (as the scheduler would release it after the wait).
        record.next_attempt_at = runtime.clock.now() - timedelta(seconds=1)
        runtime.records.save(record, 0.0)

    tango.token_error = None
    assert executor.run("req-1") == Done(ResendStatus.SENT)


# --- 5. outcomes are counted by the script that stores them ----------------------------------


def test_an_outcome_is_counted_in_the_step_that_stores_it(runtime: Runtime) -> None:
    """A worker dying between storing an outcome and flushing its metrics loses no count: the
    store itself counts. A stale second finish counts nothing."""
    record = new_request(runtime)
    record.status, record.reason = ResendStatus.FAILED, "gave up"
    assert runtime.records.finish(record, PROMOTE_MARGIN_SECONDS)
    assert metrics(runtime)["requests_total|failed"] == 1
    assert not runtime.records.finish(record, PROMOTE_MARGIN_SECONDS)
    assert metrics(runtime)["requests_total|failed"] == 1

    finished_request(runtime, "req-2")
    counted = metrics(runtime)
    assert counted["requests_total|sent"] == 1 and counted["send_delay_count|"] == 1


# --- 1. callbacks ------------------------------------------------------------------------------


def test_callbacks_never_go_to_the_resend_queue(runtime: Runtime) -> None:
    """An owed callback is taken from the outbox by the workers' delivery threads: the
    scheduler publishes nothing for it on the resend queue, where it would hold a thread."""
    finished_request(runtime)
    assert runtime.redis.zcard(runtime.keys.callbacks_due) == 1
    before = runtime.redis.llen(runtime.settings.resend_queue)
    DueReleaser(runtime).release_due()
    assert runtime.redis.llen(runtime.settings.resend_queue) == before


def test_one_live_delivery_per_entry(runtime: Runtime) -> None:
    finished_request(runtime)
    deliverer = OutcomeDeliverer(runtime, Answers(200))
    first, _ = deliverer.claim(10)
    second, next_in = deliverer.claim(10)
    assert [request_id for request_id, _ in first] == ["req-1"] and second == []
    assert CLAIM_LEASE_SECONDS - 1 < next_in <= CLAIM_LEASE_SECONDS


def test_a_late_failing_duplicate_neither_undoes_a_delivery_nor_uses_attempts(
    runtime: Runtime,
) -> None:
    """Two deliveries of one entry alive at once (the first outlived its lease). The older
    one failing changes nothing, before or after the newer one delivers; the entry stays
    delivered, counted once; a duplicate success is counted `duplicate`."""
    finished_request(runtime)
    deliverer = OutcomeDeliverer(runtime, Answers(500, 200, 500, 200))
    (old,), _ = deliverer.claim(1)
    runtime.redis.zadd(runtime.keys.callbacks_due, {"req-1": 0})  # its lease ran out
    (new,), _ = deliverer.claim(1)

    assert deliverer.deliver(*old) == "stale"  # failed while the newer one is live
    assert runtime.redis.hget(runtime.keys.callback_attempts, "req-1") is None
    assert deliverer.deliver(*new) == "delivered"
    assert deliverer.deliver(*old) == "stale"  # failed after the delivery
    assert runtime.redis.zscore(runtime.keys.callbacks_due, "req-1") is None, "not owed again"
    assert deliverer.deliver(*old) == "duplicate"  # succeeded after the delivery

    assert runtime.redis.exists(runtime.keys.callback_attempts, runtime.keys.callback_claims) == 0
    counted = metrics(runtime)
    assert counted["callbacks_total|delivered"] == 1
    assert counted["callbacks_total|duplicate"] == 1
    assert "callbacks_total|retried" not in counted


def test_a_failure_reschedules_and_the_budget_abandons(runtime: Runtime) -> None:
    finished_request(runtime)
    deliverer = OutcomeDeliverer(runtime, Answers(500, 500, 500))
    outcomes = []
    for _ in range(3):
        runtime.redis.zadd(runtime.keys.callbacks_due, {"req-1": 0})
        ((request_id, token),), _ = deliverer.claim(1)
        outcomes.append(deliverer.deliver(request_id, token))
    assert outcomes == ["retrying", "retrying", "abandoned"]
    assert runtime.redis.exists(runtime.keys.callbacks_due, runtime.keys.callback_attempts) == 0
    assert runtime.redis.exists(runtime.keys.callback_claims) == 0


def test_a_gone_record_leaves_no_attempts_behind(runtime: Runtime) -> None:
    finished_request(runtime)
    deliverer = OutcomeDeliverer(runtime, Answers(500))
    ((request_id, token),), _ = deliverer.claim(1)
    assert deliverer.deliver(request_id, token) == "retrying"
    assert runtime.redis.hget(runtime.keys.callback_attempts, "req-1") == "1"
    runtime.redis.delete(runtime.keys.record("req-1"))  # expired
    runtime.redis.zadd(runtime.keys.callbacks_due, {"req-1": 0})
    ((request_id, token),), _ = deliverer.claim(1)
    assert deliverer.deliver(request_id, token) == "gone"
    assert runtime.redis.exists(runtime.keys.callbacks_due) == 0
    assert runtime.redis.exists(runtime.keys.callback_attempts) == 0
    assert runtime.redis.exists(runtime.keys.callback_claims) == 0


def test_a_hanging_endpoint_holds_one_thread_of_a_worker(runtime: Runtime) -> None:
    """Many outcomes owed, an endpoint that hangs: a worker's delivery thread has one POST
    open at a time, and the resend pool none."""
    from worker.resend.callbacks import CallbackThread

    for n in range(5):
        finished_request(runtime, f"req-{n}")
    open_posts, most = [0], [0]
    release = threading.Event()
    lock = threading.Lock()

    class Hanging(requests.Session):
        def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            with lock:
                open_posts[0] += 1
                most[0] = max(most[0], open_posts[0])
            release.wait(0.3)
            with lock:
                open_posts[0] -= 1
            raise requests.ReadTimeout("hangs")

    thread = CallbackThread(runtime)
    thread._deliverer = OutcomeDeliverer(runtime, Hanging())
    thread.start()
    try:
        deadline = threading.Event()
        deadline.wait(1.2)
    finally:
        thread.stop()
        release.set()
        thread.join(5)
    assert most[0] == 1
    assert runtime.redis.llen(runtime.settings.resend_queue) == 0
