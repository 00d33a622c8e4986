"""Races between a run and a cancel (or a replayed script), on real Redis with the executor and
a scripted stand-in for Tango: a cancel never says `cancelled` while a call's outcome is
unknown, never writes back a stale copy of the record, and never loses a run's outcome."""

from __future__ import annotations

import pytest

from tests.support.scripted_tango import CREATED, ScriptedTango, executor_with, new_request
from worker.resend.executor import Done
from worker.runtime import Runtime
from worker.state.records import AttemptOutcome, ResendStatus
from worker.tango.client import TangoAnswer
from worker.tango.errors import TangoTransientError


class ProbingTango(ScriptedTango):
    def resend(
        self, order: str, body: dict[str, str], authorization: str, probe: bool = False
    ) -> TangoAnswer:
        return super().resend(order, body, authorization)


def ambiguous_timeout() -> TangoTransientError:
    return TangoTransientError("ReadTimeout: no answer", ambiguous=True)


def outbox(runtime: Runtime) -> list[str]:
    return [str(member) for member in runtime.redis.zrange(runtime.keys.callbacks_due, 0, -1)]


# --- a cancel while a probe is owed ----------------------------------------------------------


def test_a_cancel_after_an_ambiguous_call_answers_in_flight_while_the_probe_is_owed(
    runtime: Runtime,
) -> None:
    """Given a call whose read timed out (Tango may have resent to the new address), when the
    request is cancelled before its probe, then the cancel answers `in_flight`, the request
    keeps waiting for its probe, and no `cancelled` is stored or owed to anyone."""
    new_request(runtime)
    tango = ProbingTango(ambiguous_timeout())
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)

    assert runtime.records.cancel("req-1", 0.0) == "in_flight"

    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.RETRYING
    assert record.unresolved_call_started_at is not None
    assert outbox(runtime) == []


def test_a_cancel_after_a_call_cut_off_by_a_workers_death_answers_in_flight(
    runtime: Runtime,
) -> None:
    """Given a call that passed the gate and whose worker died (its `calling_until` is past,
    its outcome never stored), when the request is cancelled, then it answers `in_flight`:
    the replacement's probe is owed first."""
    new_request(runtime)
    tango = ScriptedTango(CREATED)

    def worker_dies() -> None:
        raise SystemExit("SIGKILL")

    tango.during_call = worker_dies
    with pytest.raises(SystemExit):
        executor_with(runtime, tango).run("req-1")
    key = runtime.keys.record("req-1")
    runtime.redis.hset(key, "calling_until", runtime.clock.now().timestamp() - 0.5)

    assert runtime.records.cancel("req-1", 0.0) == "in_flight"
    record = runtime.records.get("req-1")
    assert record is not None and not record.status.is_final


def test_once_the_probe_settles_the_outcome_a_cancel_is_honoured_again(runtime: Runtime) -> None:
    """A probe answered 201 settles it (the first call did not act; this one did): sent. A
    probe that proves nothing and falls back to waiting out the window leaves no probe owed,
    so a cancel then cancels as before."""
    new_request(runtime)
    tango = ProbingTango(ambiguous_timeout(), TangoTransientError("HTTP 500", ambiguous=False))
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)
    assert runtime.records.cancel("req-1", 0.0) == "in_flight"
    record = runtime.records.get("req-1")
    assert record is not None
    record.unresolved_call_started_at = None  # as after an inconclusive probe: today's path
    assert runtime.records.save(record, 0.0)

    assert runtime.records.cancel("req-1", 0.0) == "cancelled"


# --- a cancel never writes back a stale copy --------------------------------------------------


def test_a_cancel_keeps_what_a_run_stored_after_the_cancel_read_the_record(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a cancel that read the record while a call was under way, when that run stores
    its outcome before the cancel writes, then the cancelled record keeps the run's attempt,
    its attempt log and Tango's request id: the cancel changes status and reason only."""
    new_request(runtime)
    failure = TangoTransientError("HTTP 500", ambiguous=False)
    failure.request_id = "tango-req-7"
    tango = ScriptedTango(failure)
    store = runtime.records
    write = store._finish_script

    def let_the_run_store_its_outcome_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The cancel has read the record and is about to write: the run stores its outcome.
        monkeypatch.setattr(store, "_finish_script", write)
        assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)
        return write(*args, **kwargs)

    monkeypatch.setattr(store, "_finish_script", let_the_run_store_its_outcome_first)
    assert store.cancel("req-1", 0.0) == "cancelled"

    record = store.get("req-1")
    assert record is not None and record.status is ResendStatus.CANCELLED
    assert record.reason == "cancelled before it was sent"
    assert record.attempts == 1
    assert record.tango_request_ids == ["tango-req-7"]
    assert [entry.outcome for entry in record.attempt_log] == [AttemptOutcome.RETRYING]
