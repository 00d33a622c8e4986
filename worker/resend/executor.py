"""One run of a resend request: pass the gate, one call to Tango, the outcome carried out.

Plain code without Celery. Every wait (the order's window, a rate-limit slot, a backoff) is
parked in Redis's due index, and a scheduler publishes the task again when it is due, so no
wait lives in one worker's memory. Each run takes the request with a fencing token, so of two
task messages of one request alive at once only the newest run changes it.

This module strings the phases of `worker.resend.run` together: begin, gate, call, settle
(and probe, when an earlier call's outcome is unknown).
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime

from worker.resend.decision import CallContext, Random, decide
from worker.resend.run.begin import DUE_TOLERANCE, Done, HeldRun, begin_run, policy_from
from worker.resend.run.call import call_tango, note_call_answer
from worker.resend.run.gate import not_now, pass_gate
from worker.resend.run.probe import (
    note_interrupted_call,
    note_late_probe,
    probe_owed,
    refusal_marker_check,
    seconds_since_unresolved_call,
)
from worker.resend.run.settle import Settler, attempt_entry
from worker.runtime import Runtime
from worker.state.call_marker import MarkerVerdict
from worker.state.gate import GateVerdict, Verdict
from worker.state.records import (
    KEEP_WINDOW,
    PROMOTE_MARGIN_SECONDS,
    RELEASE_WINDOW,
    BeginVerdict,
)
from worker.tango.errors import TangoAuthenticationError, TangoError

__all__ = ["Done", "ResendExecutor", "policy_from"]

logger = logging.getLogger("tango_resend.executor")


class ResendExecutor:
    """Runs a request once; safe to run twice for one request (redelivery) at any moment."""

    def __init__(self, runtime: Runtime, rand: Random = random.random) -> None:
        self._runtime = runtime
        self._policy = policy_from(runtime)
        self._settle = Settler(runtime, self._policy, rand)

    def run(self, request_id: str, dispatch: int | None = None) -> Done:
        """Run the request once; `dispatch` is the number its task message carried."""
        runtime = self._runtime
        begun, gated, authorization = begin_run(runtime, self._policy, request_id, dispatch)
        if begun.verdict is BeginVerdict.UNKNOWN:
            if runtime.records.drop_orphan(request_id, PROMOTE_MARGIN_SECONDS):
                logger.warning("request=%s has no record; took it off its queue", request_id)
            else:
                logger.warning("request=%s unknown or expired; dropping its task", request_id)
            return Done(None)
        if begun.record is None:  # final, or a call for it is in flight elsewhere
            return Done(None)
        run = HeldRun(begun.record, begun.token)
        now = runtime.clock.now()
        record = run.record
        if gated is not None:  # the run began at the gate: nothing needed a look first
            return self._pass_gate_and_call(run, now, authorization, gated)
        if begun.interrupted_call_started_at is not None:
            note_interrupted_call(record, begun.interrupted_call_started_at, now)
        if record.next_attempt_at and now + DUE_TOLERANCE < record.next_attempt_at:
            # Woke early: a message redelivered or released ahead of a backoff's end.
            return self._settle.wait(run, (record.next_attempt_at - now).total_seconds(), now)
        return self._pass_gate_and_call(run, now, authorization)

    def _pass_gate_and_call(
        self,
        run: HeldRun,
        now: datetime,
        authorization: str | None = None,
        first_verdict: GateVerdict | None = None,
    ) -> Done:
        runtime, settle = self._runtime, self._settle
        record = run.record
        if authorization is None:
            # Authorise before the gate: waiting for the fleet's shared OAuth token (or
            # fetching it) then never eats into the window hold, and a failure here cannot
            # be a resend.
            try:
                authorization = runtime.tango.authorization()
            except TangoError as error:
                return settle.authorization_failed(run, error, now)
        # A probe: an earlier call's outcome is unknown, and this call asks Tango about it.
        probe = probe_owed(record)
        for renewed in (False, True):
            verdict = pass_gate(
                runtime, self._policy, run, probe, None if renewed else first_verdict
            )
            if verdict.verdict is not Verdict.GO:
                # The gate's wait counts from its own moment: a due time counted from the
                # `now` read before it would wake the request that much before the window's
                # end, for one more round through the scheduler and the gate.
                return not_now(settle, run, verdict, runtime.clock.now())
            through_gate = time.monotonic()
            started_at = verdict.started_at or runtime.clock.now().timestamp()
            result, sent = call_tango(runtime, record, authorization, probe)
            answered = time.monotonic()
            # Every answer goes into the order's call marker (in Lua), before anything else.
            gate_ms = round(started_at * 1000)
            check = refusal_marker_check(runtime, self._policy, result, probe, gate_ms)
            marker = note_call_answer(runtime, record, gate_ms, result, check)
            if (
                isinstance(result, TangoAuthenticationError)
                and not renewed
                and runtime.tango.renew(authorization)
            ):
                # The shared token was stale. No resend happened: give the window back (not
                # while an earlier call's outcome is unknown), and pass the gate again, so
                # the second send takes a rate-limit slot of its own.
                record.attempt_log.append(
                    attempt_entry(runtime.clock.now(), result, None, probe=probe)
                )
                window = KEEP_WINDOW if probe else RELEASE_WINDOW
                if not runtime.records.save(record, None, window, run.token):
                    return Done(None)
                try:
                    authorization = runtime.tango.authorization()
                except TangoError as error:
                    return settle.authorization_failed(run, error, now)
                continue
            # Durations on Redis's clock: the gate stamped the call's start, and the monotonic
            # time from the gate to the send is added, so `sent_at` is at most the moment the
            # probe left (Tango judged it later still).
            sent_at = started_at + (sent - through_gate)
            since = seconds_since_unresolved_call(record, sent_at) if probe else None
            answer_since = None
            if probe:
                answer_since = seconds_since_unresolved_call(
                    record, started_at + (answered - through_gate)
                )
                note_late_probe(record, answer_since, self._policy.window_seconds)
            call = CallContext(
                answered - through_gate,
                since,
                probe_answer_since_seconds=answer_since,
                marker_clear=marker.verdict is MarkerVerdict.CLEAR,
            )
            if check is not None and marker.verdict is not MarkerVerdict.CLEAR:
                logger.info(
                    "request=%s order=%s refusal proves nothing: %s",
                    record.id,
                    record.reference_order_id,
                    marker.detail or marker.verdict.value,
                )
            outcome = decide(result, settle.history(record), self._policy, settle.rand, call)
            # From here the run holds Tango's answer: its times need no Redis to be read.
            return settle.carry_out(
                run,
                result,
                outcome,
                probe=probe,
                started_at=started_at,
                sent_at=sent_at,
                answered_at=started_at + call.elapsed_seconds,
            )
        raise AssertionError("unreachable: the loop returns on its second pass")

    def fail_unexpectedly(self, request_id: str, error: BaseException) -> None:
        """Record a request as failed after a bug of ours, so it is neither lost nor looped.

        The window, if held, is left to expire: whether Tango was called is unknown.
        """
        self._settle.fail_unexpectedly(request_id, error)
