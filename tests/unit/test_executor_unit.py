"""One run of a request, without Celery: real Redis, a scripted stand-in for Tango."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from worker.errors import TangoCooldownError, TangoError, TangoPermanentError
from worker.executor import Done, Reschedule, ResendExecutor
from worker.records import ResendRecord, ResendStatus
from worker.runtime import Runtime
from worker.settings import load_settings
from worker.tango_client import TangoAnswer

ORDER = "RA251125-9101-01"


class ScriptedTango:
    """Answers calls from a script; an exception in the script is raised."""

    longest_call_seconds = 1.0

    def __init__(self, *answers: TangoAnswer | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, dict[str, str]]] = []

    def resend(self, order: str, body: dict[str, str]) -> TangoAnswer:
        self.calls.append((order, body))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


CREATED = TangoAnswer(
    status=201, body={"id": 1}, request_id="t-1", tango_time=None, elapsed_seconds=0.01
)


@pytest.fixture
def runtime(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", "executor-test")
    monkeypatch.setenv("RESEND_COOLDOWN_SECONDS", "30")
    monkeypatch.setenv("TANGO_RATE_LIMIT", "0")
    built = Runtime(load_settings())
    yield built
    built.redis.close()


def new_request(runtime: Runtime, request_id: str = "req-1") -> ResendRecord:
    now = runtime.clock.now()
    record = ResendRecord(
        id=request_id,
        reference_order_id=ORDER,
        request={"newEtid": "E000001"},
        created_at=now,
        updated_at=now,
    )
    runtime.records.create(record, None, 60, lease_seconds=5)
    return record


def executor_with(runtime: Runtime, tango: ScriptedTango) -> ResendExecutor:
    runtime.tango = tango  # type: ignore[assignment]
    return ResendExecutor(runtime, rand=lambda: 0.0)


def test_sent_holds_the_window_for_a_full_window(runtime: Runtime) -> None:
    new_request(runtime)
    tango = ScriptedTango(CREATED)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)
    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.SENT
    assert record.response == {"id": 1} and record.tango_request_ids == ["t-1"]
    assert tango.calls == [(ORDER, {"newEtid": "E000001"})]
    assert 29.5 < runtime.window.remaining_seconds(ORDER) <= 30
    assert runtime.window.holder(ORDER) == "req-1"


def test_a_held_window_defers_without_calling_and_without_using_the_budget(
    runtime: Runtime,
) -> None:
    new_request(runtime)
    runtime.window.acquire(ORDER, "someone-else", 4.0)
    tango = ScriptedTango()
    step = executor_with(runtime, tango).run("req-1")
    assert isinstance(step, Reschedule) and 3.9 < step.countdown_seconds < 4.1
    assert step.countdown_seconds > runtime.window.remaining_seconds(ORDER), "never early"
    record = runtime.records.get("req-1")
    assert record is not None
    assert (record.status, record.lock_deferrals, record.transient_failures, record.attempts) == (
        ResendStatus.DEFERRED,
        1,
        0,
        0,
    )
    assert tango.calls == []
    # A countdown is in flight: the due index holds its end plus the lost-task lease.
    score = runtime.redis.zscore(runtime.keys.due_index, "req-1")
    lease = runtime.settings.lost_task_grace_seconds
    assert score is not None and score > runtime.clock.now().timestamp() + lease


def test_a_wait_beyond_the_horizon_is_parked_not_a_countdown(runtime: Runtime) -> None:
    new_request(runtime)
    runtime.window.acquire(ORDER, "someone-else", 25.0)
    step = executor_with(runtime, ScriptedTango()).run("req-1")
    assert step == Done(ResendStatus.DEFERRED)
    score = runtime.redis.zscore(runtime.keys.due_index, "req-1")
    now = runtime.clock.now().timestamp()
    assert score is not None and now + 24.9 < score < now + 25.1


def test_a_wake_before_the_due_time_sleeps_again_without_touching_tango(
    runtime: Runtime,
) -> None:
    record = new_request(runtime)
    record.next_attempt_at = runtime.clock.now() + timedelta(seconds=5)
    runtime.records.save(record, None)
    tango = ScriptedTango()
    step = executor_with(runtime, tango).run("req-1")
    assert isinstance(step, Reschedule) and 4.5 < step.countdown_seconds <= 5
    assert tango.calls == [] and runtime.window.holder(ORDER) is None


def test_countdowns_never_exceed_half_the_visibility_timeout(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"resend_park_after_seconds": 150.0, "broker_visibility_timeout_seconds": 20}
    )
    new_request(runtime)
    runtime.window.acquire(ORDER, "someone-else", 25.0)
    step = executor_with(runtime, ScriptedTango()).run("req-1")
    assert step == Done(ResendStatus.DEFERRED), "longer than 10 s: parked, not a countdown"


@pytest.mark.parametrize("status", [ResendStatus.SENT, ResendStatus.FAILED])
def test_a_redelivered_task_for_finished_work_does_nothing(
    runtime: Runtime, status: ResendStatus
) -> None:
    record = new_request(runtime)
    runtime.records.finish(record.model_copy(update={"status": status}), 0.0)
    tango = ScriptedTango()
    assert executor_with(runtime, tango).run("req-1") == Done(status)
    assert tango.calls == [] and runtime.window.holder(ORDER) is None


def test_permanent_error_fails_at_once_and_drops_the_window(runtime: Runtime) -> None:
    new_request(runtime)
    refusal = TangoPermanentError(
        "Order not found", status=404, i18n_key="404.017", request_id="t-9"
    )
    assert executor_with(runtime, ScriptedTango(refusal)).run("req-1") == Done(ResendStatus.FAILED)
    record = runtime.records.get("req-1")
    assert record is not None and record.error is not None
    assert (record.error["i18n_key"], record.error["message"]) == ("404.017", "Order not found")
    assert runtime.window.holder(ORDER) is None


def test_cooldown_sets_the_window_to_tangos_and_defers_to_it(runtime: Runtime) -> None:
    new_request(runtime)
    cooldown = TangoCooldownError(
        "Cannot send more than once every 30 seconds. Last sent at ?",
        status=403,
        i18n_key="403.005",
    )
    step = executor_with(runtime, ScriptedTango(cooldown)).run("req-1")
    assert step == Done(ResendStatus.DEFERRED), "a full window is long: parked"
    assert runtime.window.holder(ORDER) == "req-1"
    assert runtime.window.remaining_seconds(ORDER) > 29.5
    score = runtime.redis.zscore(runtime.keys.due_index, "req-1")
    assert score is not None and score >= runtime.clock.now().timestamp() + 29.9
    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.DEFERRED


def test_an_unexpected_error_is_recorded_as_a_failure(runtime: Runtime) -> None:
    new_request(runtime)
    executor = executor_with(runtime, ScriptedTango(RuntimeError("bug")))
    with pytest.raises(RuntimeError):
        executor.run("req-1")
    executor.fail_unexpectedly("req-1", RuntimeError("bug"))
    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.FAILED
    assert record.reason == "internal error: RuntimeError"
    assert not isinstance(record.error, TangoError)
