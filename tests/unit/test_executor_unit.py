"""One run of a request, without Celery: real Redis, a scripted stand-in for Tango."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.scripted_tango import (
    CREATED,
    ORDER,
    ScriptedTango,
    executor_with,
    new_request,
)
from tests.support.window import window_of
from worker.resend.executor import Done, ResendExecutor
from worker.runtime import Runtime
from worker.state.gate import Verdict
from worker.state.records import BeginVerdict, ResendStatus
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoCooldownError,
    TangoError,
    TangoPermanentError,
    TangoTransientError,
)


def test_sent_holds_the_window_for_a_full_window(runtime: Runtime) -> None:
    new_request(runtime)
    tango = ScriptedTango(CREATED)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)
    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.SENT
    assert record.response == {"id": 1} and record.tango_request_ids == ["t-1"]
    assert tango.calls == [(ORDER, {"newEtid": "E000001"})]
    assert 29.5 < window_of(runtime).remaining_seconds(ORDER) <= 30
    assert window_of(runtime).holder(ORDER) == "req-1"


def test_a_held_window_defers_without_calling_and_without_using_the_budget(
    runtime: Runtime,
) -> None:
    new_request(runtime)
    window_of(runtime).acquire(ORDER, "someone-else", 4.0)
    tango = ScriptedTango()
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.DEFERRED)
    record = runtime.records.get("req-1")
    assert record is not None
    assert (record.status, record.lock_deferrals, record.transient_failures, record.attempts) == (
        ResendStatus.DEFERRED,
        1,
        0,
        0,
    )
    assert tango.calls == []
    # Parked in the due index for the window's end (never early), for any worker to take.
    score = runtime.redis.zscore(runtime.keys.due_index, "req-1")
    window_end = runtime.clock.now().timestamp() + window_of(runtime).remaining_seconds(ORDER)
    # PTTL counts whole milliseconds from the current one: this reading of the window's end
    # can be up to 1 ms past the real one.
    assert score is not None and window_end - 0.001 <= score < window_end + 0.1


def test_every_wait_is_parked_in_the_due_index_however_short(runtime: Runtime) -> None:
    """No wait is a countdown held in one worker's memory or sent to its own queue."""
    new_request(runtime)
    window_of(runtime).acquire(ORDER, "someone-else", 0.3)
    assert executor_with(runtime, ScriptedTango()).run("req-1") == Done(ResendStatus.DEFERRED)
    score = runtime.redis.zscore(runtime.keys.due_index, "req-1")
    now = runtime.clock.now().timestamp()
    assert score is not None and now + 0.2 < score < now + 0.4


def test_a_wake_before_the_due_time_parks_again_without_touching_tango(
    runtime: Runtime,
) -> None:
    record = new_request(runtime)
    record.next_attempt_at = runtime.clock.now() + timedelta(seconds=5)
    runtime.records.save(record, None)
    tango = ScriptedTango()
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.QUEUED)
    assert tango.calls == [] and window_of(runtime).holder(ORDER) is None
    score = runtime.redis.zscore(runtime.keys.due_index, "req-1")
    now = runtime.clock.now().timestamp()
    assert score is not None and now + 4.5 < score <= now + 5


@pytest.mark.parametrize("status", [ResendStatus.SENT, ResendStatus.FAILED])
def test_a_redelivered_task_for_finished_work_does_nothing(
    runtime: Runtime, status: ResendStatus
) -> None:
    record = new_request(runtime)
    runtime.records.finish(record.model_copy(update={"status": status}), 0.0)
    tango = ScriptedTango()
    assert executor_with(runtime, tango).run("req-1") == Done(None)
    assert tango.calls == [] and window_of(runtime).holder(ORDER) is None


def test_permanent_error_fails_at_once_and_drops_the_window(runtime: Runtime) -> None:
    new_request(runtime)
    refusal = TangoPermanentError(
        "Order not found", status=404, i18n_key="404.017", request_id="t-9"
    )
    assert executor_with(runtime, ScriptedTango(refusal)).run("req-1") == Done(ResendStatus.FAILED)
    record = runtime.records.get("req-1")
    assert record is not None and record.error is not None
    assert (record.error["i18n_key"], record.error["message"]) == ("404.017", "Order not found")
    assert window_of(runtime).holder(ORDER) is None


def test_cooldown_sets_the_window_to_tangos_and_defers_to_it(runtime: Runtime) -> None:
    new_request(runtime)
    cooldown = TangoCooldownError(
        "Cannot send more than once every 30 seconds. Last sent at ?",
        status=403,
        i18n_key="403.005",
    )
    step = executor_with(runtime, ScriptedTango(cooldown)).run("req-1")
    assert step == Done(ResendStatus.DEFERRED), "a full window is long: parked"
    assert window_of(runtime).holder(ORDER) == "req-1"
    assert window_of(runtime).remaining_seconds(ORDER) > 29.5
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


# --- fencing: one live run per request --------------------------------------------------------


def test_a_second_message_during_a_call_changes_nothing_and_cancel_stays_refused(
    runtime: Runtime,
) -> None:
    """Given a call in flight, when a second task message of the request runs and a cancel
    arrives, then the second run leaves the request alone, the cancel is refused as in flight,
    and the request ends sent (on the old code the second run's save cleared `calling_until`,
    the cancel was accepted mid-call, and the record ended cancelled though Tango resent)."""
    new_request(runtime)
    tango = ScriptedTango(CREATED)
    cancels: list[str] = []

    def second_chain_then_cancel() -> None:
        second = ResendExecutor(runtime, rand=lambda: 0.0)
        assert second.run("req-1") == Done(None)
        cancels.append(runtime.records.cancel("req-1", 0.0))

    tango.during_call = second_chain_then_cancel
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)
    assert cancels == ["in_flight"]
    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.SENT
    assert len(tango.calls) == 1


def test_a_stale_run_cannot_overwrite_the_live_runs_record(runtime: Runtime) -> None:
    """Given a run that a newer run replaced (a redelivery), when the stale run saves its
    older copy of the record, then it is refused and the live run's counters stand."""
    new_request(runtime)
    stale = runtime.records.begin("req-1", 5.0, None)
    live = runtime.records.begin("req-1", 5.0, None)
    assert stale.record is not None and live.record is not None
    assert stale.token != live.token
    live.record.transient_failures = 3
    live.record.attempt_log = []
    assert runtime.records.save(live.record, None, token=live.token)
    stale.record.transient_failures = 0
    assert not runtime.records.save(stale.record, None, token=stale.token)
    stale.record.status = ResendStatus.SENT
    assert not runtime.records.finish(stale.record, 0.0, token=stale.token)
    record = runtime.records.get("req-1")
    assert record is not None
    assert (record.status, record.transient_failures) == (ResendStatus.QUEUED, 3)


def test_a_stale_run_is_refused_by_the_gate(runtime: Runtime) -> None:
    new_request(runtime)
    stale = runtime.records.begin("req-1", 5.0, None)
    runtime.records.begin("req-1", 5.0, None)
    verdict = runtime.gate.try_start(ORDER, "req-1", 5.0, stale.token)
    assert verdict.verdict is Verdict.STALE
    assert window_of(runtime).holder(ORDER) is None


def test_a_message_for_a_request_in_flight_parks_it_until_the_hold_ends(runtime: Runtime) -> None:
    """Given a call in flight (its worker may be dead), a redelivered message does not run
    the request: it is released again when the call's window hold ends."""
    new_request(runtime)
    first = runtime.records.begin("req-1", 5.0, None)
    assert runtime.gate.try_start(ORDER, "req-1", 8.0, first.token).verdict == "go"
    again = runtime.records.begin("req-1", 5.0, None)
    assert again.verdict is BeginVerdict.BUSY
    score = runtime.redis.zscore(runtime.keys.due_index, "req-1")
    now = runtime.clock.now().timestamp()
    assert score is not None and now + 7.5 < score <= now + 8.1


# --- authorisation before the gate ------------------------------------------------------------


def test_a_401_renews_the_token_and_passes_the_gate_again_for_its_second_send(
    runtime: Runtime,
) -> None:
    """A 401 means no resend happened: the window is given back, and the second send takes a
    rate-limit slot of its own (two entries in the fleet's sliding window, not one)."""
    runtime.settings = runtime.settings.model_copy(update={"tango_rate_limit": 1000.0})
    new_request(runtime)
    rejected = TangoAuthenticationError("Unauthorized", status=401)
    tango = ScriptedTango(rejected, CREATED)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)
    assert tango.authorizations == ["Bearer token-1", "Bearer token-2"]
    assert len(tango.calls) == 2
    assert runtime.redis.zcard(runtime.keys.rate_recent_calls) == 2
    record = runtime.records.get("req-1")
    assert record is not None
    assert [entry.outcome for entry in record.attempt_log] == ["unauthorized", "sent"]


def test_a_token_timeout_before_the_gate_is_not_ambiguous(runtime: Runtime) -> None:
    """Waiting for or fetching the OAuth token happens before the gate: a failure there
    holds no window, never reached Tango (the request waits) and retries after a backoff."""
    new_request(runtime)
    tango = ScriptedTango()
    tango.token_error = TangoTransientError("ReadTimeout: no answer", ambiguous=True)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.WAITING)
    assert tango.calls == [] and window_of(runtime).holder(ORDER) is None
    record = runtime.records.get("req-1")
    assert record is not None and record.next_attempt_at is not None
    wait = (record.next_attempt_at - runtime.clock.now()).total_seconds()
    assert wait < 5, "a backoff, not a held window"


def test_authorisation_happens_before_the_gate_so_it_never_eats_into_the_hold(
    runtime: Runtime,
) -> None:
    """Waiting for the fleet's OAuth token (up to a fetch behind another process's lock)
    happens while the request holds nothing: the window is taken only after it."""
    new_request(runtime)
    holders: list[str | None] = []

    class WatchingTango(ScriptedTango):
        def authorization(self) -> str:
            holders.append(window_of(runtime).holder(ORDER))
            return super().authorization()

    tango = WatchingTango(CREATED)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)
    assert holders == [None]
