"""Settle: store what follows a call (or a failed authorisation), fenced by the run's token.

The outcome, the attempt and the order's window change in one Lua step: a final outcome is
finished (and counted, and told to hooks), anything else parks the request in the due index
until its next attempt, where a scheduler publishes its task again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import assert_never

from worker.resend.callbacks import notify_finished
from worker.resend.decision import (
    Deferred,
    Failed,
    History,
    Random,
    ResendOutcome,
    ResendPolicy,
    Retrying,
    Sent,
    backoff_seconds,
    decide,
)
from worker.resend.run.begin import Done, HeldRun
from worker.resend.run.probe import note_unresolved_call, probe_result
from worker.runtime import Runtime
from worker.state.metrics import DeferralReason
from worker.state.records import (
    KEEP_WINDOW,
    PROMOTE_MARGIN_SECONDS,
    RELEASE_WINDOW,
    AttemptEntry,
    AttemptOutcome,
    ResendRecord,
    ResendStatus,
    WindowAction,
)
from worker.state.wakeup import MAX_IDLE_SECONDS, notify_scheduled
from worker.tango.auth import TokenUnavailable
from worker.tango.client import TangoAnswer
from worker.tango.errors import TangoCooldownError, TangoError, TangoTransientError

logger = logging.getLogger("tango_resend.executor")


class Settler:
    """Stores a run's outcome: finish, defer, retry, or wait for its turn."""

    def __init__(self, runtime: Runtime, policy: ResendPolicy, rand: Random) -> None:
        self.runtime = runtime
        self.policy = policy
        self.rand = rand

    def history(self, record: ResendRecord) -> History:
        return History(record.transient_failures, record.cooldown_deferrals)

    def carry_out(
        self,
        run: HeldRun,
        result: TangoAnswer | TangoError,
        outcome: ResendOutcome,
        window_touched: bool = True,
        probe: bool = False,
        started_at: float | None = None,
    ) -> Done:
        """Store what follows one call (or one failed authorisation): the attempt, the result,
        and the outcome with the order's window, finishing, deferring or retrying the run."""
        record = run.record
        now = self.runtime.clock.now()
        record.updated_at = now
        record.attempt_log.append(attempt_entry(now, result, outcome, probe=probe))
        if probe:
            self.runtime.metrics.probe(probe_result(outcome))
        self._note_result(record, result, probe, started_at)

        # The window changes in the same Lua step that stores the outcome.
        window: WindowAction = KEEP_WINDOW
        if window_touched:
            window = RELEASE_WINDOW if outcome.window_seconds is None else outcome.window_seconds

        if isinstance(outcome, Sent | Failed):
            stamp_final(record, outcome, now)
            self.finish(run, window)
            return Done(record.status)
        if isinstance(outcome, Deferred):
            if not probe:  # a probe's cooldown answer is not a cooldown of our making
                self.runtime.metrics.deferral(DeferralReason.COOLDOWN)
                record.cooldown_deferrals += 1
            return self.defer(run, outcome.delay_seconds, now, outcome.reason, window=window)
        record.transient_failures += 1
        return self.defer(
            run,
            outcome.delay_seconds,
            now,
            outcome.reason,
            status=ResendStatus.RETRYING,
            window=window,
        )

    def _note_result(
        self,
        record: ResendRecord,
        result: TangoAnswer | TangoError,
        probe: bool,
        started_at: float | None,
    ) -> None:
        """What the record keeps of a call's result, whatever follows it: whether an outcome
        is now unknown (the next call is a probe) or settled, Tango's request id, the error.
        Apart from `carry_out` so that each reads as one step (mccabe: at most 10)."""
        if (
            isinstance(result, TangoTransientError)
            and result.ambiguous
            and started_at is not None
            and self.policy.probe_delay_seconds is not None
        ):
            # Its outcome is unknown: the next call is a probe, judged from the earliest
            # such call (any resend of the order since then is one of ours).
            note_unresolved_call(record, started_at)
        elif probe and isinstance(result, TangoCooldownError):
            record.unresolved_call_started_at = None  # settled, or today's path from here
        if result.request_id:
            record.tango_request_ids.append(result.request_id)
        record.error = result.as_dict() if isinstance(result, TangoError) else None

    def authorization_failed(self, run: HeldRun, error: TangoError, now: datetime) -> Done:
        """No call to the resend endpoint was made: never ambiguous, the window untouched."""
        if isinstance(error, TangoTransientError):
            error.ambiguous = False  # it failed before any resend could be sent
        if isinstance(error, TokenUnavailable):
            # The token endpoint is broken or misconfigured (logged, and on /healthz): not
            # this request's fault, so it waits with backoff and never fails for it, nor
            # uses up its retries.
            backoff = backoff_seconds(error.failures, self.policy, self.rand)
            delay = max(error.retry_after or 0.0, backoff)
            run.record.error = error.as_dict()
            return self.defer(
                run, delay, now, f"waiting for an OAuth token: {error}", ResendStatus.RETRYING
            )
        outcome = decide(error, self.history(run.record), self.policy, self.rand)
        return self.carry_out(run, error, outcome, window_touched=False)

    def finish(self, run: HeldRun, window: WindowAction) -> None:
        """Store a final outcome (the script that stores it also counts it, in the same atomic
        step); tell hooks only if this run stored it."""
        record = run.record
        if self.runtime.records.finish(record, PROMOTE_MARGIN_SECONDS, window, run.token):
            notify_finished(record)
            log_state(record, record.reason)

    def fail_unexpectedly(
        self, request_id: str, error: BaseException, token: str | None = None
    ) -> None:
        """Record a request as failed after a bug of ours, so it is neither lost nor looped.

        Fenced like every finish: with the token of the run that hit the bug, nothing is
        stored if a newer run holds the request. Without one (the bug came before the run
        took the request), only while no call is in flight or of unknown outcome, keeping
        whatever a run stored meanwhile. The window, if held, is left to expire: whether
        Tango was called is unknown.
        """
        reason = f"internal error: {type(error).__name__}"
        records = self.runtime.records
        if token is None:
            if records.finish_unowned(
                request_id, ResendStatus.FAILED, reason, PROMOTE_MARGIN_SECONDS
            ):
                stored = records.get(request_id)
                if stored is not None:
                    notify_finished(stored)
                    log_state(stored, reason)
            return
        record = records.get(request_id)
        if record is None or record.status.is_final:
            return
        record.status = ResendStatus.FAILED
        record.reason = reason
        record.next_attempt_at = None
        record.updated_at = self.runtime.clock.now()
        self.finish(HeldRun(record, token), KEEP_WINDOW)

    def defer(
        self,
        run: HeldRun,
        delay: float,
        now: datetime,
        reason: str,
        status: ResendStatus = ResendStatus.DEFERRED,
        window: WindowAction = KEEP_WINDOW,
    ) -> Done:
        record = run.record
        record.status = status
        record.reason = reason
        record.next_attempt_at = now + timedelta(seconds=delay)
        record.updated_at = now
        done = self.wait(run, delay, now, window)
        if done.status is not None:
            log_state(record, f"{reason}; next attempt in {delay:.3f}s")
        return done

    def wait(
        self, run: HeldRun, delay: float, now: datetime, window: WindowAction = KEEP_WINDOW
    ) -> Done:
        """Park the request in the due index until `delay` from now; a scheduler publishes
        its task then, to whichever worker of the fleet takes it first."""
        runtime = self.runtime
        delay = max(delay, 0.0)
        if not runtime.records.save(run.record, now.timestamp() + delay, window, run.token):
            return Done(None)  # finished, cancelled, or taken by a newer run meanwhile
        if delay < MAX_IDLE_SECONDS:  # due before sleeping schedulers would look again
            notify_scheduled(runtime.redis, runtime.keys.scheduler_wakeup)
        return Done(run.record.status)

    def wait_for_turn(self, run: HeldRun, now: datetime) -> Done:
        record = run.record
        record.status = ResendStatus.DEFERRED
        record.reason = "waiting for an earlier request of the same order"
        record.updated_at = now
        # The gate scored it as waiting; the request ahead may already have promoted it, so
        # its score is left alone here.
        self.runtime.records.save(record, None, KEEP_WINDOW, run.token)
        return Done(record.status)


def attempt_entry(
    now: datetime,
    result: TangoAnswer | TangoError,
    outcome: ResendOutcome | None,
    probe: bool = False,
) -> AttemptEntry:
    """One line of the attempt log; `outcome` None for a 401 answered by renewing the token."""
    if isinstance(result, TangoAnswer):
        return AttemptEntry(
            at=now,
            outcome=AttemptOutcome.SENT,
            status=result.status,
            tango_request_id=result.request_id,
            probe=probe,
        )
    return AttemptEntry(
        at=now,
        outcome=_attempt_outcome(outcome),
        status=result.status,
        i18n_key=result.i18n_key,
        tango_request_id=result.request_id,
        probe=probe,
    )


def _attempt_outcome(outcome: ResendOutcome | None) -> AttemptOutcome:
    """The attempt log's word for an outcome decided after an error answer. A probe whose
    cooldown answer proved an earlier call resent reads `confirmed`."""
    match outcome:
        case None:
            return AttemptOutcome.UNAUTHORIZED
        case Sent(confirmed_by=None):
            return AttemptOutcome.SENT
        case Sent():
            return AttemptOutcome.CONFIRMED
        case Deferred():
            return AttemptOutcome.DEFERRED
        case Retrying():
            return AttemptOutcome.RETRYING
        case Failed():
            return AttemptOutcome.FAILED
        case unreachable:
            assert_never(unreachable)


def stamp_final(record: ResendRecord, outcome: Sent | Failed, now: datetime) -> None:
    """Set a final outcome on the record (before `finish` stores it)."""
    if isinstance(outcome, Sent):
        record.status, record.sent_at, record.response = ResendStatus.SENT, now, outcome.response
        record.reason = None
        record.confirmed_by = outcome.confirmed_by
        record.unresolved_call_started_at = None
        if outcome.confirmed_by is not None:
            record.error = None  # Tango's refusal was the proof, not a failure
    else:
        record.status, record.reason = ResendStatus.FAILED, outcome.reason
    record.next_attempt_at = None


def log_state(record: ResendRecord, detail: str | None) -> None:
    """One line per state change; ids and outcomes only, never recipients' contact data."""
    tango_request_id = record.tango_request_ids[-1] if record.tango_request_ids else None
    logger.info(
        "request=%s order=%s status=%s attempt=%d tango_request_id=%s%s",
        record.id,
        record.reference_order_id,
        record.status.value,
        record.attempts,
        tango_request_id,
        f" reason={detail!r}" if detail else "",
        extra={
            "request_id": record.id,
            "order_id": record.reference_order_id,
            "status": record.status.value,
            "attempt": record.attempts,
            "tango_request_id": tango_request_id,
            "reason": detail,
        },
    )
