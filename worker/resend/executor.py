"""One run of a resend request: pass the gate, one call to Tango, the outcome carried out.

Plain code without Celery. Every wait (the order's window, a rate-limit slot, a backoff) is
parked in Redis's due index, and a scheduler publishes the task again when it is due, so no
wait lives in one worker's memory. Each run takes the request with a fencing token, so of two
task messages of one request alive at once only the newest run changes it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

from worker.resend.callbacks import notify_finished
from worker.resend.decision import (
    CallContext,
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
    delay_for_held_window,
)
from worker.runtime import Runtime
from worker.state.gate import GateVerdict, Verdict
from worker.state.metrics import DeferralReason, ProbeResult
from worker.state.record_model import order_in_request_id
from worker.state.records import (
    KEEP_WINDOW,
    PROMOTE_MARGIN_SECONDS,
    RELEASE_WINDOW,
    AttemptEntry,
    AttemptOutcome,
    BeginVerdict,
    Begun,
    ResendRecord,
    ResendStatus,
    WindowAction,
)
from worker.state.wakeup import MAX_IDLE_SECONDS, notify_scheduled
from worker.tango.auth import TokenUnavailable
from worker.tango.client import TangoAnswer
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoCooldownError,
    TangoError,
    TangoTransientError,
)

logger = logging.getLogger("tango_resend.executor")

_SHORT_RATE_WAIT_SECONDS = 0.1
_SHORT_RATE_WAIT_TRIES = 4
# A run wakes this much before a reserved rate-limit slot and waits out the rest in-thread,
# so the call starts on its slot despite the hop through the scheduler and the broker.
_RATE_WAKE_AHEAD_SECONDS = 0.05

# A wake-up this close to its due time is treated as due (timer granularity, not earliness:
# the gate, not this check, is what keeps calls out of Tango's window).
_DUE_TOLERANCE = timedelta(milliseconds=2)


@dataclass(frozen=True)
class Done:
    """Nothing more to do for this message (finished, parked, or waiting for its turn)."""

    status: ResendStatus | None


@dataclass(frozen=True)
class _Run:
    """The request this run holds, and the token that fences its writes."""

    record: ResendRecord
    token: str


def policy_from(runtime: Runtime) -> ResendPolicy:
    settings = runtime.settings
    return ResendPolicy(
        window_seconds=settings.resend_window_seconds,
        max_retries=settings.resend_max_retries,
        backoff_base_seconds=settings.resend_backoff_base_seconds,
        backoff_max_seconds=settings.resend_backoff_max_seconds,
        defer_jitter_seconds=settings.resend_defer_jitter_seconds,
        max_cooldown_deferrals=settings.resend_max_cooldown_deferrals,
        probe_delay_seconds=settings.resend_probe_delay_seconds,
        longest_send_seconds=(
            settings.tango_connect_timeout_seconds + settings.tango_timeout_seconds
        ),
    )


class ResendExecutor:
    """Runs a request once; safe to run twice for one request (redelivery) at any moment."""

    def __init__(self, runtime: Runtime, rand: Random = random.random) -> None:
        self._runtime = runtime
        self._policy = policy_from(runtime)
        self._rand = rand

    def run(self, request_id: str, dispatch: int | None = None) -> Done:
        """Run the request once; `dispatch` is the number its task message carried."""
        runtime = self._runtime
        begun, gated, authorization = self._begin(request_id, dispatch)
        if begun.verdict is BeginVerdict.UNKNOWN:
            if runtime.records.drop_orphan(request_id, PROMOTE_MARGIN_SECONDS):
                logger.warning("request=%s has no record; took it off its queue", request_id)
            else:
                logger.warning("request=%s unknown or expired; dropping its task", request_id)
            return Done(None)
        if begun.record is None:  # final, or a call for it is in flight elsewhere
            return Done(None)
        run = _Run(begun.record, begun.token)
        now = runtime.clock.now()
        record = run.record
        if gated is not None:  # the run began at the gate: nothing needed a look first
            return self._pass_gate_and_call(run, now, authorization, gated)
        if begun.interrupted_call_started_at is not None:
            _note_interrupted_call(record, begun.interrupted_call_started_at, now)
        if record.next_attempt_at and now + _DUE_TOLERANCE < record.next_attempt_at:
            # Woke early: a message redelivered or released ahead of a backoff's end.
            return self._wait(run, (record.next_attempt_at - now).total_seconds(), now)
        return self._pass_gate_and_call(run, now, authorization)

    def _begin(
        self, request_id: str, dispatch: int | None
    ) -> tuple[Begun, GateVerdict | None, str | None]:
        """Begin the run; when its id names its order and the authorization is at hand, pass
        the gate in the same round trip if the run needs no look first (start.lua). Returns
        the run, the gate's verdict (None: not passed yet) and the authorization (None: to
        be had, or to fail, on the usual path)."""
        runtime = self._runtime
        lease = runtime.settings.resend_lease_seconds
        order = order_in_request_id(request_id)
        if order is not None:
            # Authorise before the gate: waiting for the fleet's shared OAuth token (or
            # fetching it) then never eats into the window hold.
            with contextlib.suppress(TangoError):  # the usual path asks again, and reports it
                authorization = runtime.tango.authorization()
                call_seconds = runtime.tango.longest_call_seconds
                begun, verdict = runtime.gate.begin_and_try_start(
                    order,
                    request_id,
                    lease,
                    dispatch,
                    self._policy.window_seconds + call_seconds,
                    call_seconds=call_seconds,
                    due_tolerance_seconds=_DUE_TOLERANCE.total_seconds(),
                )
                return begun, verdict, authorization
        return runtime.records.begin(request_id, lease, dispatch), None, None

    def _pass_gate_and_call(
        self,
        run: _Run,
        now: datetime,
        authorization: str | None = None,
        first_verdict: GateVerdict | None = None,
    ) -> Done:
        runtime = self._runtime
        record = run.record
        if authorization is None:
            # Authorise before the gate: waiting for the fleet's shared OAuth token (or
            # fetching it) then never eats into the window hold, and a failure here cannot
            # be a resend.
            try:
                authorization = runtime.tango.authorization()
            except TangoError as error:
                return self._authorization_failed(run, error, now)
        # A probe: an earlier call's outcome is unknown, and this call asks Tango about it.
        probe = record.unresolved_call_started_at is not None
        for renewed in (False, True):
            verdict = self._gate(run, probe, None if renewed else first_verdict)
            if verdict.verdict is not Verdict.GO:
                # The gate's wait counts from its own moment: a due time counted from the
                # `now` read before it would wake the request that much before the window's
                # end, for one more round through the scheduler and the gate.
                return self._not_now(run, verdict, runtime.clock.now())
            through_gate = time.monotonic()
            started_at = verdict.started_at or runtime.clock.now().timestamp()
            result, sent = self._call(record, authorization, probe)
            if (
                isinstance(result, TangoAuthenticationError)
                and not renewed
                and runtime.tango.renew(authorization)
            ):
                # The shared token was stale. No resend happened: give the window back (not
                # while an earlier call's outcome is unknown), and pass the gate again, so
                # the second send takes a rate-limit slot of its own.
                record.attempt_log.append(
                    _attempt_entry(runtime.clock.now(), result, None, probe=probe)
                )
                window = KEEP_WINDOW if probe else RELEASE_WINDOW
                if not runtime.records.save(record, None, window, run.token):
                    return Done(None)
                try:
                    authorization = runtime.tango.authorization()
                except TangoError as error:
                    return self._authorization_failed(run, error, now)
                continue
            # Durations on Redis's clock: the gate stamped the call's start, and the monotonic
            # time from the gate to the send is added, so `sent_at` is at most the moment the
            # probe left (Tango judged it later still).
            sent_at = started_at + (sent - through_gate)
            since = None
            if probe and record.unresolved_call_started_at is not None:
                since = sent_at - record.unresolved_call_started_at
            call = CallContext(time.monotonic() - through_gate, since)
            outcome = decide(result, self._history(record), self._policy, self._rand, call)
            return self._carry_out(run, result, outcome, probe=probe, started_at=started_at)
        raise AssertionError("unreachable: the loop returns on its second pass")

    def _gate(
        self, run: _Run, probe: bool = False, first: GateVerdict | None = None
    ) -> GateVerdict:
        """Pass the gate (`first`: the verdict it already gave this run), waiting in-thread
        for a rate slot a moment away."""
        runtime, record = self._runtime, run.record
        # The window is held for a window plus the longest call; the call counts as in flight
        # (`calling_until`) only for the longest call itself, so that after a worker's death
        # mid-call the replacement can probe inside Tango's window.
        call_seconds = runtime.tango.longest_call_seconds
        hold = self._policy.window_seconds + call_seconds
        order, request_id = record.reference_order_id, record.id
        verdict = first or runtime.gate.try_start(
            order, request_id, hold, run.token, call_seconds=call_seconds, probe=probe
        )
        for _ in range(_SHORT_RATE_WAIT_TRIES):
            # A rate slot a moment away is waited for here: a round trip through the scheduler
            # and the broker would cost more than the wait, and make the call late for its slot.
            if (
                verdict.verdict is not Verdict.RATE
                or verdict.wait_seconds > _SHORT_RATE_WAIT_SECONDS
            ):
                break
            time.sleep(verdict.wait_seconds)
            verdict = runtime.gate.try_start(
                order, request_id, hold, run.token, call_seconds=call_seconds, probe=probe
            )
        return verdict

    def _not_now(self, run: _Run, verdict: GateVerdict, now: datetime) -> Done:
        """Carry out a gate verdict other than `go`."""
        record, metrics = run.record, self._runtime.metrics
        match verdict.verdict:
            case Verdict.FINAL | Verdict.UNKNOWN | Verdict.STALE:
                return Done(None)
            case Verdict.TURN:
                metrics.deferral(DeferralReason.TURN)
                return self._wait_for_turn(run, now)
            case Verdict.WINDOW:
                metrics.deferral(DeferralReason.WINDOW)
                record.window_deferrals += 1
                delay = delay_for_held_window(verdict.wait_seconds, self._policy, self._rand)
                return self._defer(run, delay, now, "the order's window is held")
            case Verdict.RATE:
                # The slot is reserved for this request alone; wake a little before it and
                # wait out the rest here, so the call starts on its slot.
                metrics.deferral(DeferralReason.RATE_LIMIT)
                delay = max(verdict.wait_seconds - _RATE_WAKE_AHEAD_SECONDS, 0.001)
                return self._defer(run, delay, now, "waiting for its rate-limit slot")
            case Verdict.GO:
                raise AssertionError("a `go` is carried out by calling Tango, not here")
            case unreachable:
                assert_never(unreachable)

    def _authorization_failed(self, run: _Run, error: TangoError, now: datetime) -> Done:
        """No call to the resend endpoint was made: never ambiguous, the window untouched."""
        if isinstance(error, TangoTransientError):
            error.ambiguous = False  # it failed before any resend could be sent
        if isinstance(error, TokenUnavailable):
            # The token endpoint is broken or misconfigured (logged, and on /healthz): not
            # this request's fault, so it waits with backoff and never fails for it, nor
            # uses up its retries.
            backoff = backoff_seconds(error.failures, self._policy, self._rand)
            delay = max(error.retry_after or 0.0, backoff)
            run.record.error = error.as_dict()
            return self._defer(
                run, delay, now, f"waiting for an OAuth token: {error}", ResendStatus.RETRYING
            )
        outcome = decide(error, self._history(run.record), self._policy, self._rand)
        return self._carry_out(run, error, outcome, window_touched=False)

    @staticmethod
    def _history(record: ResendRecord) -> History:
        return History(record.transient_failures, record.cooldown_deferrals)

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
        self._finish(_Run(record, ""), KEEP_WINDOW)

    def _finish(self, run: _Run, window: WindowAction) -> None:
        """Store a final outcome (the script that stores it also counts it, in the same atomic
        step); tell hooks only if this run stored it."""
        record = run.record
        if self._runtime.records.finish(record, PROMOTE_MARGIN_SECONDS, window, run.token):
            notify_finished(record)
            _log_state(record, record.reason)

    def _call(
        self, record: ResendRecord, authorization: str, probe: bool = False
    ) -> tuple[TangoAnswer | TangoError, float]:
        """One send to Tango's resend endpoint, on the slot and window the gate granted;
        returns its result and the monotonic time it was sent."""
        runtime = self._runtime
        record.attempts += 1
        result: TangoAnswer | TangoError
        started_at = time.monotonic()
        try:
            if probe:
                result = runtime.tango.resend(
                    record.reference_order_id, record.request, authorization, probe=True
                )
            else:
                result = runtime.tango.resend(
                    record.reference_order_id, record.request, authorization
                )
        except TangoError as error:
            result = error
        runtime.metrics.tango_call(result.status, time.monotonic() - started_at)
        if isinstance(result, TangoTransientError) and result.status == 429:
            # Tango says the fleet is too fast: hold every worker back, not just this request.
            runtime.gate.pause(result.retry_after or runtime.gate.rate_interval_seconds)
        return result, started_at

    def _carry_out(
        self,
        run: _Run,
        result: TangoAnswer | TangoError,
        outcome: ResendOutcome,
        window_touched: bool = True,
        probe: bool = False,
        started_at: float | None = None,
    ) -> Done:
        """Store what follows one call (or one failed authorisation): the attempt, the result,
        and the outcome with the order's window, finishing, deferring or retrying the run."""
        record = run.record
        now = self._runtime.clock.now()
        record.updated_at = now
        record.attempt_log.append(_attempt_entry(now, result, outcome, probe=probe))
        if probe:
            self._runtime.metrics.probe(_probe_result(outcome))
        self._note_result(record, result, probe, started_at)

        # The window changes in the same Lua step that stores the outcome.
        window: WindowAction = KEEP_WINDOW
        if window_touched:
            window = RELEASE_WINDOW if outcome.window_seconds is None else outcome.window_seconds

        if isinstance(outcome, Sent | Failed):
            _stamp_final(record, outcome, now)
            self._finish(run, window)
            return Done(record.status)
        if isinstance(outcome, Deferred):
            if not probe:  # a probe's cooldown answer is not a cooldown of our making
                self._runtime.metrics.deferral(DeferralReason.COOLDOWN)
                record.cooldown_deferrals += 1
            return self._defer(run, outcome.delay_seconds, now, outcome.reason, window=window)
        record.transient_failures += 1
        return self._defer(
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
        Apart from `_carry_out` so that each reads as one step (mccabe: at most 10)."""
        if (
            isinstance(result, TangoTransientError)
            and result.ambiguous
            and started_at is not None
            and self._policy.probe_delay_seconds is not None
        ):
            # Its outcome is unknown: the next call is a probe, judged from the earliest
            # such call (any resend of the order since then is one of ours).
            _note_unresolved_call(record, started_at)
        elif probe and isinstance(result, TangoCooldownError):
            record.unresolved_call_started_at = None  # settled, or today's path from here
        if result.request_id:
            record.tango_request_ids.append(result.request_id)
        record.error = result.as_dict() if isinstance(result, TangoError) else None

    def _defer(
        self,
        run: _Run,
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
        done = self._wait(run, delay, now, window)
        if done.status is not None:
            _log_state(record, f"{reason}; next attempt in {delay:.3f}s")
        return done

    def _wait(
        self, run: _Run, delay: float, now: datetime, window: WindowAction = KEEP_WINDOW
    ) -> Done:
        """Park the request in the due index until `delay` from now; a scheduler publishes
        its task then, to whichever worker of the fleet takes it first."""
        runtime = self._runtime
        delay = max(delay, 0.0)
        if not runtime.records.save(run.record, now.timestamp() + delay, window, run.token):
            return Done(None)  # finished, cancelled, or taken by a newer run meanwhile
        if delay < MAX_IDLE_SECONDS:  # due before sleeping schedulers would look again
            notify_scheduled(runtime.redis, runtime.keys.scheduler_wakeup)
        return Done(run.record.status)

    def _wait_for_turn(self, run: _Run, now: datetime) -> Done:
        record = run.record
        record.status = ResendStatus.DEFERRED
        record.reason = "waiting for an earlier request of the same order"
        record.updated_at = now
        # The gate scored it as waiting; the request ahead may already have promoted it, so
        # its score is left alone here.
        self._runtime.records.save(record, None, KEEP_WINDOW, run.token)
        return Done(record.status)


def _attempt_entry(
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


def _probe_result(outcome: ResendOutcome) -> ProbeResult:
    """The `result` label of `tango_resend_probes_total` for a probe's outcome."""
    if isinstance(outcome, Sent):
        return ProbeResult.SENT if outcome.confirmed_by is None else ProbeResult.CONFIRMED
    return ProbeResult.INCONCLUSIVE


def _stamp_final(record: ResendRecord, outcome: Sent | Failed, now: datetime) -> None:
    """Set a final outcome on the record (before `_finish` stores it)."""
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


def _note_unresolved_call(record: ResendRecord, started_at: float) -> None:
    """A call whose outcome is unknown: probes are judged from the earliest such call."""
    earliest = record.unresolved_call_started_at
    record.unresolved_call_started_at = (
        started_at if earliest is None else min(earliest, started_at)
    )


def _note_interrupted_call(record: ResendRecord, started_at: float, now: datetime) -> None:
    """A call of this request passed the gate and nobody stored its outcome (its worker died
    mid-call): whether Tango acted is unknown, so the next call is a probe."""
    _note_unresolved_call(record, started_at)
    record.attempt_log.append(AttemptEntry(at=now, outcome=AttemptOutcome.INTERRUPTED))
    logger.warning(
        "request=%s order=%s a call was cut off (its worker died?); probing Tango",
        record.id,
        record.reference_order_id,
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
