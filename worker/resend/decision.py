"""What happens after a Tango answer: a pure function from (answer, history, policy) to outcome.

The Celery task only carries the outcome out. Randomness (jitter) comes in as a function, so
tests pin it and assert exact delays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.resend.refusal import refusal_proves_sent
from worker.state.records import ConfirmedBy
from worker.tango.client import TangoAnswer
from worker.tango.error_mapping import NeverReached, never_reached
from worker.tango.errors import (
    TangoCooldownError,
    TangoError,
    TangoTransientError,
)

Random = Callable[[], float]
"""Returns a float in [0, 1)."""

# The smallest delay we add after a window: a deferral must land after the window, not on it.
MIN_DEFER_MARGIN_SECONDS = 0.001


@dataclass(frozen=True)
class ResendPolicy:
    window_seconds: float
    max_retries: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    defer_jitter_seconds: float
    max_cooldown_deferrals: int
    # After an ambiguous call, probe Tango this long after it (capped, see `probe_delay`);
    # None turns probing off: an ambiguous call is retried after the window.
    probe_delay_seconds: float | None = None
    # The longest a single send can take (connect + read timeout), for that cap.
    longest_send_seconds: float = 0.0
    # RESEND_EXCLUSIVE: the deployment is the sole sender of its orders' resends, so a
    # probe's refusal can prove our call acted (refusal.py).
    exclusive: bool = False
    # Calls that never reached Tango (`never_reached`) are retried with backoff capped at
    # this, until `outage_patience_seconds` after the request's first try.
    outage_retry_max_seconds: float = 30.0
    outage_patience_seconds: float = 3600.0


@dataclass(frozen=True)
class History:
    """What earlier attempts of this request left behind."""

    transient_failures: int = 0
    cooldown_deferrals: int = 0
    # Calls in a row that never reached Tango, and the time since the request's first try.
    outage_failures: int = 0
    since_first_try_seconds: float = 0.0


@dataclass(frozen=True)
class Sent:
    """Tango resent the reward; the window now runs `window_seconds` from its answer.

    `confirmed_by` is None for Tango's 201; "cooldown" when a probe's cooldown answer's
    last-sent time proved that an earlier call whose answer we never had resent; "refusal"
    when the refusal itself proved it (RESEND_EXCLUSIVE, refusal.py).
    """

    response: dict[str, Any] | None
    window_seconds: float
    confirmed_by: ConfirmedBy | None = None
    # A probe's proof: how long before Tango's answer its last resend was (Tango's "now"
    # minus its last-sent time: a duration, so no clock but Tango's is read), for `sent_at`
    # to be the resend's moment rather than the probe's. None when unknown.
    sent_seconds_before: float | None = None


@dataclass(frozen=True)
class CallContext:
    """What the executor knows of the call `decide` judges, beyond its answer.

    Attributes:
        elapsed_seconds: from the call's start at the gate to its outcome (Redis's clock).
        probe_since_seconds: for a probe, the time from the start of the earliest call of
            the request whose outcome is unknown to this probe's send (Redis's clock: one
            clock for the fleet, so a probe made by another worker measures it too); None
            when the call is not a probe.
        probe_answer_since_seconds: for a probe, the time from that start to the probe's
            answer (Redis's clock): the longest Tango's judgement can have come after it.
        marker_clear: for a probe Tango refused, whether the order's call marker clears
            every other call of ours and its Redis lost nothing (refusal.py, conditions 2
            and 4); False when not asked.
    """

    elapsed_seconds: float
    probe_since_seconds: float | None = None
    probe_answer_since_seconds: float | None = None
    marker_clear: bool = False


@dataclass(frozen=True)
class Deferred:
    """Tango's window is still open: hold our window `window_seconds`, wake after `delay`."""

    delay_seconds: float
    window_seconds: float
    reason: str


@dataclass(frozen=True)
class Retrying:
    """A transient failure: try again after `delay_seconds`.

    `window_seconds` None means no resend can have happened, so the window is released;
    otherwise the call was ambiguous and the window is held that long. `waiting_on` says the
    call never reached Tango (the request waits, with patience, instead of retrying).
    """

    delay_seconds: float
    window_seconds: float | None
    reason: str
    waiting_on: NeverReached | None = None


@dataclass(frozen=True)
class Failed:
    """A final failure. `window_seconds` as in `Retrying`."""

    reason: str
    window_seconds: float | None


ResendOutcome = Sent | Deferred | Retrying | Failed


def defer_jitter(policy: ResendPolicy, rand: Random) -> float:
    """Strictly positive jitter: it spreads waiters out but never moves a wake-up earlier."""
    return MIN_DEFER_MARGIN_SECONDS + policy.defer_jitter_seconds * rand()


def delay_for_held_window(remaining_seconds: float, policy: ResendPolicy, rand: Random) -> float:
    """Deferral when another request holds the order's window: its rest plus jitter.

    A holder still waiting for Tango holds the window for a window plus the longest call, but
    re-anchors it to one window after Tango's answer, usually much sooner. The window cannot
    end earlier than one window from now, so waking then is never early; the waker re-checks
    and sleeps the exact rest, instead of oversleeping a whole call timeout.
    """
    rest = min(max(remaining_seconds, 0.0), policy.window_seconds)
    return rest + defer_jitter(policy, rand)


def backoff_seconds(failures: int, policy: ResendPolicy, rand: Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped.

    failures=1 gives base/2..base, failures=2 gives base..2*base, and so on up to the cap.
    """
    growth: float = 2.0 ** (failures - 1)
    ceiling = min(policy.backoff_max_seconds, policy.backoff_base_seconds * growth)
    return ceiling / 2 + ceiling / 2 * rand()


def cooldown_remaining_seconds(error: TangoCooldownError, window_seconds: float) -> float:
    """How long Tango's own window still runs, judged on Tango's clock only.

    The last-sent time and Tango's "now" both come from the error, so a worker's clock never
    takes part. Text at whole seconds could mean any moment in that second, so the latest
    reading of the last-sent time is used. Unreadable or contradictory times mean one full
    window from the error. The window is the longer of ours (RESEND_COOLDOWN_SECONDS) and the
    one Tango's message states: a setting shorter than Tango's real window must not make us
    call again inside it.
    """
    window_seconds = max(window_seconds, error.stated_window_seconds or 0.0)
    if error.last_sent_at is None or error.tango_now is None:
        return window_seconds
    window_end = error.last_sent_at.latest.timestamp() + window_seconds
    remaining = window_end - error.tango_now.at.timestamp()
    if remaining <= 0:
        # Tango refused, so its window is not over; our reading of the times must be off.
        return window_seconds
    return min(remaining, 2 * window_seconds)


def cooldown_proves_sent(error: TangoCooldownError, since_first_call_seconds: float) -> bool:
    """Does a probe's cooldown answer prove that our earlier call resent?

    Only durations are compared, each on one clock. On Tango's: how long before its answer
    Tango last resent (its "now" minus its last-sent time), taken at its longest given both
    times' precision. On ours: how long before the probe's send our earliest unresolved call
    started (Redis's clock); Tango judged the probe after it was sent, so this is shorter
    than the true interval up to Tango's "now". If Tango's last resend is younger than that,
    it came after our call started: our call acted. Missing, contradictory or coarse times
    (minute precision), or a margin too close to call, prove nothing.
    """
    if error.last_sent_at is None or error.tango_now is None or since_first_call_seconds <= 0:
        return False
    latest_age = (error.tango_now.latest - error.last_sent_at.at).total_seconds()
    if latest_age < 0:  # a last resend after Tango's own "now": times we misread
        return False
    return latest_age < since_first_call_seconds


def _last_sent_age(error: TangoCooldownError) -> float | None:
    """How long before Tango's answer its last resend was, on Tango's clock alone."""
    if error.last_sent_at is None or error.tango_now is None:
        return None
    return max(0.0, (error.tango_now.at - error.last_sent_at.at).total_seconds())


def probe_delay(elapsed_seconds: float, policy: ResendPolicy) -> float:
    """How long after an ambiguous outcome the probe goes.

    Late enough that a call still being processed inside Tango is done (the setting, a few
    seconds after our timeout), but early enough that the probe, even taking its longest,
    reaches Tango inside the window the first call may have opened: the first call acted
    after it started, so the probe must be judged less than a window after that start.
    """
    wanted = policy.probe_delay_seconds or 0.0
    room = policy.window_seconds - elapsed_seconds - policy.longest_send_seconds
    return max(0.0, min(wanted, room))


def decide(
    result: TangoAnswer | TangoError,
    history: History,
    policy: ResendPolicy,
    rand: Random,
    call: CallContext | None = None,
) -> ResendOutcome:
    """Choose what follows one call to Tango.

    Args:
        result: the answer, or the error the call raised.
        history: counts from this request's earlier attempts (not including this one).
        policy: window, retry budget, backoff and jitter settings.
        rand: the source of jitter.
        call: what is known of the call beyond its answer; with it, an ambiguous outcome is
            probed (if the policy probes) and a probe's answer is judged as one.
    """
    probing = call is not None and call.probe_since_seconds is not None
    if isinstance(result, TangoAnswer):
        return Sent(response=result.body, window_seconds=policy.window_seconds)
    if isinstance(result, TangoCooldownError) and probing:
        assert call is not None and call.probe_since_seconds is not None
        remaining = cooldown_remaining_seconds(result, policy.window_seconds)
        if cooldown_proves_sent(result, call.probe_since_seconds):
            return Sent(
                response=None,
                window_seconds=remaining,
                confirmed_by="cooldown",
                sent_seconds_before=_last_sent_age(result),
            )
        if policy.exclusive and refusal_proves_sent(
            result, policy.window_seconds, call.marker_clear, call.probe_answer_since_seconds
        ):
            # Our call acted after its gate, so Tango's window (no longer than ours) ends
            # within one of ours from now, whatever a coarse last-sent time would allow.
            held = min(remaining, policy.window_seconds)
            return Sent(response=None, window_seconds=held, confirmed_by="refusal")
        # Not a cooldown of our making (it answers our question), so no deferral is counted:
        # today's path, the resend after Tango's window.
        return Deferred(
            delay_seconds=remaining + defer_jitter(policy, rand),
            window_seconds=remaining,
            reason=f"probe inconclusive, resending after Tango's window: {result.message}",
        )
    outcome = _decide_plain(result, history, policy, rand, call)
    if probing and outcome.window_seconds is None and not isinstance(outcome, Sent):
        # The earlier call may still have resent: never give its window back on a probe's
        # failure; hold it one window from now, which covers Tango's window of that call.
        if isinstance(outcome, Retrying):
            return Retrying(
                outcome.delay_seconds, policy.window_seconds, outcome.reason, outcome.waiting_on
            )
        if isinstance(outcome, Failed):
            return Failed(outcome.reason, policy.window_seconds)
    return outcome


def outage_backoff_seconds(failures: int, policy: ResendPolicy, rand: Random) -> float:
    """Backoff after a call that never reached Tango: "equal jitter" as `backoff_seconds`,
    from RESEND_BACKOFF_BASE_SECONDS, capped at TANGO_OUTAGE_RETRY_MAX_SECONDS."""
    growth: float = 2.0 ** (min(failures, 64) - 1)
    ceiling = min(policy.outage_retry_max_seconds, policy.backoff_base_seconds * growth)
    return ceiling / 2 + ceiling / 2 * rand()


def patience_left_seconds(history: History, policy: ResendPolicy) -> float:
    """How long the request may still wait for Tango (0: its patience has run out)."""
    return max(0.0, policy.outage_patience_seconds - history.since_first_try_seconds)


def out_of_patience_reason(policy: ResendPolicy, last_error: str, url: str | None) -> str:
    """A request's failure after its patience ran out: the URL (no credentials) and the
    last error."""
    where = f" at {url}" if url else ""
    return (
        f"Tango could not be reached{where} for {policy.outage_patience_seconds:g}s since "
        f"the first try (TANGO_OUTAGE_PATIENCE_SECONDS); last error: {last_error}"
    )


def _wait_for_tango(
    result: TangoError, kind: NeverReached, history: History, policy: ResendPolicy, rand: Random
) -> ResendOutcome:
    """A call that never reached Tango: wait and try again, or fail once patience is out."""
    left = patience_left_seconds(history, policy)
    if left <= 0:
        return Failed(out_of_patience_reason(policy, str(result), result.url), None)
    delay = outage_backoff_seconds(history.outage_failures + 1, policy, rand)
    if isinstance(result, TangoTransientError) and result.retry_after is not None:
        delay = max(delay, result.retry_after)
    # The last try lands when patience runs out, not a whole backoff after it.
    delay = min(delay, left + MIN_DEFER_MARGIN_SECONDS)
    return Retrying(
        delay_seconds=delay, window_seconds=None, reason=f"{kind.value}: {result}", waiting_on=kind
    )


def _decide_plain(
    result: TangoError,
    history: History,
    policy: ResendPolicy,
    rand: Random,
    call: CallContext | None,
) -> ResendOutcome:
    kind = never_reached(result)
    if kind is not None:
        return _wait_for_tango(result, kind, history, policy, rand)
    if isinstance(result, TangoCooldownError):
        remaining = cooldown_remaining_seconds(result, policy.window_seconds)
        if history.cooldown_deferrals + 1 > policy.max_cooldown_deferrals:
            return Failed(
                reason=f"Tango kept refusing with its cooldown error: {result}",
                window_seconds=remaining,
            )
        return Deferred(
            delay_seconds=remaining + defer_jitter(policy, rand),
            window_seconds=remaining,
            reason=f"cooldown: {result.message}",
        )
    if isinstance(result, TangoTransientError):
        held = policy.window_seconds if result.ambiguous else None
        failures = history.transient_failures + 1
        if failures > policy.max_retries:
            return Failed(
                reason=f"gave up after {failures} transient failures: {result}",
                window_seconds=held,
            )
        delay = backoff_seconds(failures, policy, rand)
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        if held is not None and call is not None and policy.probe_delay_seconds is not None:
            # Tango may have resent: ask it, promptly, inside the window it would have opened
            # (a probe). Its cooldown answer says whether it did; the window stays held.
            delay = probe_delay(call.elapsed_seconds, policy) + defer_jitter(policy, rand)
            if result.retry_after is not None:
                delay = max(delay, result.retry_after)
            return Retrying(
                delay_seconds=delay, window_seconds=held, reason=f"{result}; probing Tango"
            )
        if held is not None:
            # Tango may have resent; asking again inside its window would only earn a 403.
            delay = max(delay, held + defer_jitter(policy, rand))
        return Retrying(delay_seconds=delay, window_seconds=held, reason=str(result))
    return Failed(reason=f"Tango refused the resend: {result}", window_seconds=None)
