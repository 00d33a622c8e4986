"""Settle: store what follows a call (or a failed authorisation), fenced by the run's token.

The outcome, the attempt and the order's window change in one Lua step: a final outcome is
finished (and counted, and told to hooks), anything else parks the request in the due index
until its next attempt, where a scheduler publishes its task again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar, assert_never

import redis

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
    out_of_patience_reason,
    patience_left_seconds,
)
from worker.resend.run.begin import Done, HeldRun
from worker.resend.run.outage import (
    note_not_waiting,
    note_waiting,
    outage_wait,
    waiting_reason,
)
from worker.resend.run.probe import note_unresolved_call, probe_result
from worker.runtime import Runtime
from worker.state.durability import NotReplicated
from worker.state.metrics import DeferralReason
from worker.state.outage import Outage, OutageReason
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
from worker.tango.error_mapping import NeverReached, shown_url
from worker.tango.errors import TangoCooldownError, TangoError, TangoTransientError

logger = logging.getLogger("tango_resend.executor")

# While a run holds Tango's answer and Redis cannot take it, it tries again after these
# pauses (the last one repeating) for as long as its process lives.
HOLD_RETRY_SECONDS = (0.1, 0.2, 0.5)

_Stored = TypeVar("_Stored")
# While holding, a warning every this many tries (about half a minute), not every try.
_HOLD_LOG_EVERY = 60
# Answers of a Redis that is away, read-only or not yet confirming: what waiting mends. A
# replica answers READONLY until it is promoted (or the client follows the failover); a
# primary set with `min-replicas-to-write` answers NOREPLICAS; Sentinel says MASTERDOWN.
_AWAY_ANSWERS = ("NOREPLICAS", "MASTERDOWN", "TRYAGAIN")


class Settler:
    """Stores a run's outcome: finish, defer, retry, or wait for its turn."""

    def __init__(self, runtime: Runtime, policy: ResendPolicy, rand: Random) -> None:
        self.runtime = runtime
        self.policy = policy
        self.rand = rand

    def history(self, record: ResendRecord) -> History:
        since_first_try = 0.0
        if record.first_tried_at is not None:
            since_first_try = self.runtime.clock.timestamp() - record.first_tried_at
        return History(
            record.transient_failures,
            record.cooldown_deferrals,
            record.outage_failures,
            max(since_first_try, 0.0),
        )

    def carry_out(
        self,
        run: HeldRun,
        result: TangoAnswer | TangoError,
        outcome: ResendOutcome,
        window_touched: bool = True,
        probe: bool = False,
        started_at: float | None = None,
        sent_at: float | None = None,
        answered_at: float | None = None,
    ) -> Done:
        """Store what follows one call (or one failed authorisation): the attempt, the result,
        and the outcome with the order's window, finishing, deferring or retrying the run.

        After a call (`window_touched`), the run holds Tango's answer: a fact that no Redis
        failure may lose. Its times come from the gate's stamp and this host's monotonic
        clock (`sent_at`, `answered_at`, Redis's clock in epoch seconds), so storing it
        needs no read first, and it is stored again and again until Redis takes it.
        """
        record = run.record
        now = _moment(answered_at) if answered_at is not None else self.runtime.clock.now()
        record.updated_at = now
        # The attempt log dates the call from when it was made, not from when it was stored.
        made = _moment(sent_at) if sent_at is not None else now
        record.attempt_log.append(attempt_entry(made, result, outcome, probe=probe))
        if probe:
            self.runtime.metrics.probe(probe_result(outcome))
        self._note_result(record, result, probe, started_at)

        # The window changes in the same Lua step that stores the outcome.
        window: WindowAction = KEEP_WINDOW
        if window_touched:
            window = RELEASE_WINDOW if outcome.window_seconds is None else outcome.window_seconds

        holding = window_touched
        if isinstance(outcome, Retrying) and outcome.waiting_on is not None:
            assert isinstance(result, TangoError)
            return self.wait_on_tango(run, result, outcome, now, window)
        note_not_waiting(self.runtime, record)
        if isinstance(outcome, Sent | Failed):
            stamp_final(record, outcome, now)
            self.finish(run, window, holding=holding, answer_in_hand=isinstance(outcome, Sent))
            return Done(record.status)
        if isinstance(outcome, Deferred):
            if not probe:  # a probe's cooldown answer is not a cooldown of our making
                self.runtime.metrics.deferral(DeferralReason.COOLDOWN)
                record.cooldown_deferrals += 1
            return self.defer(
                run, outcome.delay_seconds, now, outcome.reason, window=window, holding=holding
            )
        record.transient_failures += 1
        return self.defer(
            run,
            outcome.delay_seconds,
            now,
            outcome.reason,
            status=ResendStatus.RETRYING,
            window=window,
            holding=holding,
        )

    def keep_trying(self, run: HeldRun, store: Callable[[], _Stored]) -> _Stored:
        """Store a held answer (`store`), again and again while Redis fails or cannot confirm
        it on REDIS_WAIT_REPLICAS replicas, for as long as this process lives: the answer is
        in no other place. Meanwhile the order's window stays as the gate left it (held for a
        window and the longest call), and the request's call counts as in flight until its
        bound, so no other run calls for it before then; a replacement (after this process's
        death, or an outage longer than that bound) finds what was stored, or else the call
        left in flight, which it probes. (The Redis client's own reconnection attempts come
        on top of these pauses.)"""
        for attempt in itertools.count():
            try:
                return store()
            except redis.RedisError as error:
                if not _redis_away(error):
                    raise  # Redis answered, with an error no retry mends: a bug, reported
                if attempt % _HOLD_LOG_EVERY == 0:
                    logger.warning(
                        "request=%s holds Tango's answer; Redis failed (%s): keeping it and "
                        "storing it again until Redis takes it",
                        run.record.id,
                        error,
                    )
                time.sleep(HOLD_RETRY_SECONDS[min(attempt, len(HOLD_RETRY_SECONDS) - 1)])
        raise AssertionError("unreachable: a held answer is stored or its process ends")

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
            return self._wait_for_token(run, error, now)
        outcome = decide(error, self.history(run.record), self.policy, self.rand)
        return self.carry_out(run, error, outcome, window_touched=False)

    def _wait_for_token(self, run: HeldRun, error: TokenUnavailable, now: datetime) -> Done:
        """The token endpoint is broken or refuses our client credentials (logged, and on
        /healthz): not this request's fault, so it waits with backoff, without using up its
        retries, until its patience runs out."""
        record = run.record
        history = self.history(record)
        if patience_left_seconds(history, self.policy) <= 0:
            error.url = error.url or shown_url(str(self.runtime.settings.tango_token_url))
            outcome = Failed(out_of_patience_reason(self.policy, str(error), error.url), None)
            return self.carry_out(run, error, outcome, window_touched=False)
        backoff = backoff_seconds(error.failures, self.policy, self.rand)
        delay = min(max(error.retry_after or 0.0, backoff), self.policy.outage_retry_max_seconds)
        record.error = error.as_dict()
        if error.status in (401, 403):
            kind = NeverReached.CREDENTIALS_REFUSED
            with contextlib.suppress(redis.RedisError):
                self.runtime.outage.mark_down(
                    OutageReason.CREDENTIALS_REFUSED,
                    str(error),
                    error.url or shown_url(str(self.runtime.settings.tango_token_url)),
                    self.runtime.settings.tango_outage_patience_seconds,
                )
            record.outage_failures += 1
            reason = waiting_reason(self.runtime, kind, error)
            note_waiting(self.runtime, kind, record.id, now.timestamp() + delay)
            return self.defer(run, delay, now, reason, ResendStatus.WAITING)
        return self.defer(
            run, delay, now, f"waiting for an OAuth token: {error}", ResendStatus.RETRYING
        )

    def wait_on_tango(
        self,
        run: HeldRun,
        result: TangoError,
        outcome: Retrying,
        now: datetime,
        window: WindowAction,
    ) -> Done:
        """A call that never reached Tango: the request waits (its own status, its reason
        saying on what), using up none of its retries."""
        assert outcome.waiting_on is not None
        record = run.record
        record.outage_failures += 1
        reason = waiting_reason(self.runtime, outcome.waiting_on, result)
        until = now.timestamp() + outcome.delay_seconds
        note_waiting(self.runtime, outcome.waiting_on, record.id, until)
        return self.defer(
            run, outcome.delay_seconds, now, reason, status=ResendStatus.WAITING, window=window
        )

    def wait_on_outage(self, run: HeldRun, outage: Outage, now: datetime) -> Done:
        """Tango is marked down and another run tests it: wait without calling, or fail once
        patience has run out."""
        record = run.record
        delay, failed = outage_wait(outage, self.history(record), self.policy, self.rand)
        if failed is not None:
            record.updated_at = now
            record.error = {"kind": "TangoOutage", "message": outage.detail, "url": outage.url}
            stamp_final(record, failed, now)
            note_not_waiting(self.runtime, record)
            self.finish(run, KEEP_WINDOW)
            return Done(record.status)
        kind = NeverReached(outage.reason.value)
        note_waiting(self.runtime, kind, record.id, now.timestamp() + delay)
        if record.outage_failures == 0:
            record.outage_failures = 1  # counted among the waiting until it gets through
        return self.defer(run, delay, now, outage.waiting_reason(), ResendStatus.WAITING)

    def finish(
        self,
        run: HeldRun,
        window: WindowAction,
        *,
        holding: bool = False,
        answer_in_hand: bool = False,
    ) -> None:
        """Store a final outcome (the script that stores it also counts it, in the same atomic
        step); tell hooks only if this run stored it, and (REDIS_WAIT_REPLICAS) only once it
        is on the replicas. `holding`: the outcome follows Tango's answer (`keep_trying`);
        `answer_in_hand`: that answer is a resend, stored even if a newer run took over."""
        record = run.record

        def store() -> bool:
            return self.runtime.records.finish(
                record, PROMOTE_MARGIN_SECONDS, window, run.token, answer_in_hand=answer_in_hand
            )

        if self.keep_trying(run, store) if holding else store():
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
        holding: bool = False,
    ) -> Done:
        record = run.record
        record.status = status
        record.reason = reason
        record.next_attempt_at = now + timedelta(seconds=delay)
        record.updated_at = now
        done = self.wait(run, delay, now, window, holding=holding)
        if done.status is not None:
            log_state(record, f"{reason}; next attempt in {delay:.3f}s")
        return done

    def wait(
        self,
        run: HeldRun,
        delay: float,
        now: datetime,
        window: WindowAction = KEEP_WINDOW,
        *,
        holding: bool = False,
    ) -> Done:
        """Park the request in the due index until `delay` from now; a scheduler publishes
        its task then, to whichever worker of the fleet takes it first. `holding`: the
        record holds Tango's answer, stored until Redis takes it (`keep_trying`)."""
        runtime = self.runtime
        delay = max(delay, 0.0)

        def store() -> bool:
            return runtime.records.save(run.record, now.timestamp() + delay, window, run.token)

        if not (self.keep_trying(run, store) if holding else store()):
            return Done(None)  # finished, cancelled, or taken by a newer run meanwhile
        if delay < MAX_IDLE_SECONDS:  # due before sleeping schedulers would look again
            try:
                notify_scheduled(runtime.redis, runtime.keys.scheduler_wakeup)
            except redis.RedisError:  # stored: the schedulers' next look finds it anyway
                logger.debug("scheduler wake-up not sent", exc_info=True)
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


def _redis_away(error: redis.RedisError) -> bool:
    """Whether a Redis error says "not now" (unreachable, read-only, loading, not confirming)
    rather than "never" (a script's error: a bug, which retrying would only repeat)."""
    away = NotReplicated | redis.ConnectionError | redis.TimeoutError | redis.ReadOnlyError
    if isinstance(error, away):  # BusyLoadingError (LOADING) is a ConnectionError
        return True
    return str(error).startswith(_AWAY_ANSWERS)


def _moment(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


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
        record.status, record.response = ResendStatus.SENT, outcome.response
        record.sent_at = _sent_at(record, outcome, now)
        record.reason = None
        record.confirmed_by = outcome.confirmed_by
        record.unresolved_call_started_at = None
        if outcome.confirmed_by is not None:
            record.error = None  # Tango's refusal was the proof, not a failure
    else:
        record.status, record.reason = ResendStatus.FAILED, outcome.reason
    record.next_attempt_at = None


def _sent_at(record: ResendRecord, outcome: Sent, now: datetime) -> datetime:
    """When the resend happened: Tango's 201 is now; a probe's proof says it happened
    earlier, during a call whose answer we never had. Tango's cooldown answer dates it (its
    last resend's age, moved onto our clock); a refusal only bounds it, and the cut-off
    call's start is the best we know."""
    if outcome.confirmed_by is None:
        return now
    if outcome.sent_seconds_before is not None:
        return now - timedelta(seconds=outcome.sent_seconds_before)
    if record.unresolved_call_started_at is not None:
        return datetime.fromtimestamp(record.unresolved_call_started_at, tz=UTC)
    return now


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
