"""One run of a resend request: window check, one call to Tango, the outcome carried out.

Plain code without Celery: the task turns `Reschedule` into `retry(countdown=...)`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

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
from worker.errors import TangoError
from worker.records import AttemptEntry, ResendRecord, ResendStatus
from worker.runtime import Runtime
from worker.tango_client import TangoAnswer

logger = logging.getLogger("tango_resend.executor")

# A wake-up this close to its due time is treated as due (timer granularity, not earliness:
# the window lock, not this check, is what keeps calls out of Tango's window).
_DUE_TOLERANCE = timedelta(milliseconds=2)


@dataclass(frozen=True)
class Done:
    """Nothing more to do for this message."""

    status: ResendStatus | None


@dataclass(frozen=True)
class Reschedule:
    """Run again after `countdown_seconds`."""

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
        records = self._runtime.records
        record = records.get(request_id)
        if record is None:
            logger.warning("request=%s unknown or expired; dropping its task", request_id)
            return Done(None)
        if record.status.is_final:
            return Done(record.status)  # a redelivered message for finished work
        now = self._runtime.clock.now()
        if record.next_attempt_at and now + _DUE_TOLERANCE < record.next_attempt_at:
            # Woke early: a capped countdown, or a host whose clock runs ahead of Redis's.
            return self._reschedule((record.next_attempt_at - now).total_seconds())

        order = record.reference_order_id
        hold = self._policy.window_seconds + self._runtime.tango.longest_call_seconds
        held_for = self._runtime.window.acquire(order, request_id, hold)
        if held_for > 0:
            return self._defer_for_held_window(record, held_for, now)

        # Re-read under the window: a duplicate message may have finished this request meanwhile.
        latest = records.get(request_id)
        if latest is None or latest.status.is_final:
            self._runtime.window.release(order, request_id)
            return Done(None if latest is None else latest.status)
        record = latest
        record.attempts += 1
        record.updated_at = now
        records.save(record)

        result: TangoAnswer | TangoError
        try:
            result = self._runtime.tango.resend(order, record.request)
        except TangoError as error:
            result = error
        history = History(record.transient_failures, record.cooldown_deferrals)
        outcome = decide(result, history, self._policy, self._rand)
        return self._carry_out(record, result, outcome)

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
        self._runtime.records.save(record)
        _log_state(record, record.reason)

    def _defer_for_held_window(self, record: ResendRecord, held_for: float, now: datetime) -> Step:
        delay = delay_for_held_window(held_for, self._policy, self._rand)
        record.status = ResendStatus.DEFERRED
        record.lock_deferrals += 1
        record.reason = f"the order's window is held; checking again in {delay:.2f}s"
        record.next_attempt_at = now + timedelta(seconds=delay)
        record.updated_at = now
        self._runtime.records.save(record)
        _log_state(record, record.reason)
        return self._reschedule(delay)

    def _carry_out(
        self, record: ResendRecord, result: TangoAnswer | TangoError, outcome: ResendOutcome
    ) -> Step:
        window = self._runtime.window
        order, request_id = record.reference_order_id, record.id
        now = self._runtime.clock.now()
        record.updated_at = now
        record.attempt_log.append(_attempt_entry(now, result, outcome))
        if result.request_id:
            record.tango_request_ids.append(result.request_id)

        if outcome.window_seconds is None:
            window.release(order, request_id)
        else:
            window.reanchor(order, request_id, outcome.window_seconds)

        step: Step
        if isinstance(outcome, Sent):
            record.status = ResendStatus.SENT
            record.sent_at = now
            record.next_attempt_at = None
            record.response = outcome.response
            record.error = None
            record.reason = None
            step = Done(ResendStatus.SENT)
        elif isinstance(outcome, Failed):
            record.status = ResendStatus.FAILED
            record.next_attempt_at = None
            record.reason = outcome.reason
            record.error = result.as_dict() if isinstance(result, TangoError) else None
            step = Done(ResendStatus.FAILED)
        else:
            if isinstance(outcome, Deferred):
                record.status = ResendStatus.DEFERRED
                record.cooldown_deferrals += 1
            else:
                record.status = ResendStatus.RETRYING
                record.transient_failures += 1
            record.reason = outcome.reason
            record.error = result.as_dict() if isinstance(result, TangoError) else None
            record.next_attempt_at = now + timedelta(seconds=outcome.delay_seconds)
            step = self._reschedule(outcome.delay_seconds)
        self._runtime.records.save(record)
        _log_state(record, record.reason if record.status is not ResendStatus.SENT else None)
        return step

    def _reschedule(self, delay_seconds: float) -> Reschedule:
        longest = self._runtime.settings.max_countdown_seconds
        return Reschedule(min(max(delay_seconds, 0.0), longest))


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
    )
