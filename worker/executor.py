"""One run of a resend request: pass the gate, one call to Tango, the outcome carried out.

Plain code without Celery: the task turns `Reschedule` into a countdown on the same worker.
Longer waits are parked in the due index, and the scheduler releases them.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.callbacks import notify_finished
from worker.decision import (
    Deferred,
    Failed,
    History,
    Random,
    ResendOutcome,
    ResendPolicy,
    Sent,
    decide,
    delay_for_held_window,
)
from worker.errors import TangoError, TangoTransientError
from worker.records import (
    KEEP_WINDOW,
    PROMOTE_MARGIN_SECONDS,
    RELEASE_WINDOW,
    AttemptEntry,
    ResendRecord,
    ResendStatus,
    WindowAction,
)
from worker.runtime import Runtime
from worker.scheduler import MAX_IDLE_SECONDS, notify_scheduled
from worker.tango_client import TangoAnswer

logger = logging.getLogger("tango_resend.executor")

_SHORT_RATE_WAIT_SECONDS = 0.1
_SHORT_RATE_WAIT_TRIES = 4

# A wake-up this close to its due time is treated as due (timer granularity, not earliness:
# the gate, not this check, is what keeps calls out of Tango's window).
_DUE_TOLERANCE = timedelta(milliseconds=2)


@dataclass(frozen=True)
class Done:
    """Nothing more to do for this message (finished, parked, or waiting for its turn)."""

    status: ResendStatus | None


@dataclass(frozen=True)
class Reschedule:
    """Run again after `countdown_seconds` (a short wait, on the same worker)."""

    countdown_seconds: float


Step = Done | Reschedule


def policy_from(runtime: Runtime) -> ResendPolicy:
    settings = runtime.settings
    return ResendPolicy(
        window_seconds=settings.resend_cooldown_seconds,
        max_retries=settings.resend_max_retries,
        backoff_base_seconds=settings.resend_backoff_base_seconds,
        backoff_max_seconds=settings.resend_backoff_max_seconds,
        defer_jitter_seconds=settings.resend_defer_jitter_seconds,
        max_cooldown_deferrals=settings.resend_max_cooldown_deferrals,
    )


class ResendExecutor:
    """Runs a request once; safe to run twice for one request (redelivery) at any moment."""

    def __init__(self, runtime: Runtime, rand: Random = random.random) -> None:
        self._runtime = runtime
        self._policy = policy_from(runtime)
        self._rand = rand

    def run(self, request_id: str) -> Step:
        record = self._runtime.records.get(request_id)
        if record is None:
            logger.warning("request=%s unknown or expired; dropping its task", request_id)
            return Done(None)
        if record.status.is_final:
            return Done(record.status)  # a redelivered message for finished work
        now = self._runtime.clock.now()
        if record.next_attempt_at and now + _DUE_TOLERANCE < record.next_attempt_at:
            # Woke early: a message redelivered or released ahead of a backoff's end.
            return self._wait(record, (record.next_attempt_at - now).total_seconds(), now)

        hold = self._policy.window_seconds + self._runtime.tango.longest_call_seconds
        verdict = self._runtime.gate.try_start(record.reference_order_id, request_id, hold)
        for _ in range(_SHORT_RATE_WAIT_TRIES):
            # A rate slot a moment away is waited for here: a countdown's round trip through
            # the broker would cost more than the wait, and make the call late for its slot.
            if verdict.verdict != "rate" or verdict.wait_seconds > _SHORT_RATE_WAIT_SECONDS:
                break
            time.sleep(verdict.wait_seconds)
            verdict = self._runtime.gate.try_start(record.reference_order_id, request_id, hold)
        if verdict.verdict in ("final", "unknown"):
            return Done(None)
        if verdict.verdict == "turn":
            self._runtime.metrics.deferral("turn")
            return self._wait_for_turn(record, now)
        if verdict.verdict == "window":
            self._runtime.metrics.deferral("lock")
            record.lock_deferrals += 1
            delay = delay_for_held_window(verdict.wait_seconds, self._policy, self._rand)
            return self._defer(record, delay, now, "the order's window is held")
        if verdict.verdict == "rate":
            # The slot is reserved for this request alone: wake a little before it and wait
            # out the rest here, so the call starts on its slot.
            self._runtime.metrics.deferral("rate_limit")
            delay = max(verdict.wait_seconds - _SHORT_RATE_WAIT_SECONDS / 2, 0.001)
            return self._defer(record, delay, now, "waiting for its rate-limit slot")
        return self._call(record, now)

    def fail_unexpectedly(self, request_id: str, error: BaseException) -> None:
        """Record a request as failed after a bug of ours, so it is neither lost nor looped.

        The window, if held, is left to expire: whether Tango was called is unknown.
        """
        record = self._runtime.records.get(request_id)
        if record is None or record.status.is_final:
            return
        record.status = ResendStatus.FAILED
        record.reason = f"internal error: {type(error).__name__}"
        record.next_attempt_at = None
        record.updated_at = self._runtime.clock.now()
        self._finish(record, KEEP_WINDOW)

    def _finish(self, record: ResendRecord, window: WindowAction) -> None:
        """Store a final outcome; count it and tell hooks only if this run stored it."""
        if self._runtime.records.finish(record, PROMOTE_MARGIN_SECONDS, window):
            self._count_outcome(record)
            notify_finished(record)
        _log_state(record, record.reason)

    def _count_outcome(self, record: ResendRecord) -> None:
        if record.status is ResendStatus.SENT and record.sent_at is not None:
            self._runtime.metrics.sent((record.sent_at - record.created_at).total_seconds())
        else:
            self._runtime.metrics.request(record.status.value)

    def _call(self, record: ResendRecord, started: datetime) -> Step:
        record.attempts += 1
        result: TangoAnswer | TangoError
        started_at = time.monotonic()
        try:
            result = self._runtime.tango.resend(record.reference_order_id, record.request)
        except TangoError as error:
            result = error
        self._runtime.metrics.tango_call(result.status, time.monotonic() - started_at)
        if isinstance(result, TangoTransientError) and result.status == 429:
            # Tango says the fleet is too fast: hold every worker back, not just this request.
            self._runtime.gate.pause(result.retry_after or self._runtime.gate.rate_interval_seconds)
        history = History(record.transient_failures, record.cooldown_deferrals)
        outcome = decide(result, history, self._policy, self._rand)
        return self._carry_out(record, result, outcome)

    def _carry_out(
        self, record: ResendRecord, result: TangoAnswer | TangoError, outcome: ResendOutcome
    ) -> Step:
        now = self._runtime.clock.now()
        record.updated_at = now
        record.attempt_log.append(_attempt_entry(now, result, outcome))
        if result.request_id:
            record.tango_request_ids.append(result.request_id)
        record.error = result.as_dict() if isinstance(result, TangoError) else None

        # The window changes in the same Lua step that stores the outcome.
        window: WindowAction = (
            RELEASE_WINDOW if outcome.window_seconds is None else outcome.window_seconds
        )

        if isinstance(outcome, Sent | Failed):
            if isinstance(outcome, Sent):
                record.status, record.sent_at, record.response = (
                    ResendStatus.SENT,
                    now,
                    outcome.response,
                )
                record.reason = None
            else:
                record.status, record.reason = ResendStatus.FAILED, outcome.reason
            record.next_attempt_at = None
            self._finish(record, window)
            return Done(record.status)
        if isinstance(outcome, Deferred):
            self._runtime.metrics.deferral("cooldown")
            record.cooldown_deferrals += 1
            return self._defer(record, outcome.delay_seconds, now, outcome.reason, window=window)
        record.transient_failures += 1
        return self._defer(
            record,
            outcome.delay_seconds,
            now,
            outcome.reason,
            status=ResendStatus.RETRYING,
            window=window,
        )

    def _defer(
        self,
        record: ResendRecord,
        delay: float,
        now: datetime,
        reason: str,
        status: ResendStatus = ResendStatus.DEFERRED,
        window: WindowAction = KEEP_WINDOW,
    ) -> Step:
        record.status = status
        record.reason = reason
        record.next_attempt_at = now + timedelta(seconds=delay)
        record.updated_at = now
        step = self._wait(record, delay, now, window)
        _log_state(record, f"{reason}; next attempt in {delay:.3f}s")
        return step

    def _wait(
        self, record: ResendRecord, delay: float, now: datetime, window: WindowAction = KEEP_WINDOW
    ) -> Step:
        """A short wait is a countdown; a longer one is parked for the scheduler.

        The due index gets the wake-up time (parked) or the countdown's end plus a lease (a
        task message is in flight), so a lost message is released again, never stranded.
        """
        settings = self._runtime.settings
        delay = max(delay, 0.0)
        due = now.timestamp() + delay
        short = delay <= settings.countdown_horizon_seconds
        score = due + settings.lost_task_grace_seconds if short else due
        if not self._runtime.records.save(record, score, window):
            return Done(None)  # finished or cancelled meanwhile
        if short:
            return Reschedule(delay)
        if delay < MAX_IDLE_SECONDS:  # due before sleeping schedulers would look again
            notify_scheduled(self._runtime.redis, self._runtime.keys.scheduler_wakeup)
        return Done(record.status)

    def _wait_for_turn(self, record: ResendRecord, now: datetime) -> Step:
        record.status = ResendStatus.DEFERRED
        record.reason = "waiting for an earlier request of the same order"
        record.updated_at = now
        # The gate scored it as waiting; the request ahead may already have promoted it, so
        # its score is left alone here.
        self._runtime.records.save(record, None)
        return Done(record.status)


def _attempt_entry(
    now: datetime, result: TangoAnswer | TangoError, outcome: ResendOutcome
) -> AttemptEntry:
    if isinstance(result, TangoAnswer):
        return AttemptEntry(
            at=now, outcome="sent", status=result.status, tango_request_id=result.request_id
        )
    return AttemptEntry(
        at=now,
        outcome=type(outcome).__name__.lower(),
        status=result.status,
        i18n_key=result.i18n_key,
        tango_request_id=result.request_id,
    )


def _log_state(record: ResendRecord, detail: str | None) -> None:
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
