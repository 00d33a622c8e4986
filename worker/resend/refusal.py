"""The refusal proof: when Tango's refusal of a probe proves that our ambiguous call acted.

Tango refuses a resend (403.005) only within its window after *some* resend of the order. A
deployment that is the sole sender of its orders' resends (RESEND_EXCLUSIVE) knows every
resend that could have happened: its own calls. If every other call of ours to the order could
have acted no earlier than... no later than Tango's window (plus a margin) before the probe,
have acted no later than Tango's window (plus a margin) before the probe, only a call of the
probe's own request can explain the refusal: it acted. That holds at any precision of Tango's
last-sent time, where the cooldown proof (decision.py) needs milliseconds.

The four conditions, each checked where its facts live:
1. Tango's message states its window, no longer than ours (`refusal_window_seconds`).
2. The order's call marker shows every other call of ours could have acted no later than the
   probe's gate time minus Tango's window minus `REFUSAL_MARGIN_SECONDS` (Lua, on Redis's
   clock: worker/state/call_marker.py).
3. The last-sent time, where precise enough to show a resend before our call started, does
   not (`last_sent_before_our_call`).
4. The Redis holding the marker lost nothing since: its run_id is unchanged (Lua, with 2).

What breaks it: anyone else resending the order inside Tango's window before the probe (the
portal, another integration or deployment). The request is then recorded `sent`, though Tango
may have resent nothing for it, perhaps not to the address it asked for.
"""

from __future__ import annotations

from worker.tango.errors import TangoCooldownError

# Added to Tango's window when asking whether another call could explain a refusal: it covers
# how Tango may count its window (from receipt, from its act, from its commit) at least.
REFUSAL_MARGIN_SECONDS = 2.0


def refusal_window_seconds(error: TangoCooldownError, our_window_seconds: float) -> float | None:
    """Condition 1: the window Tango's refusal states, if it states one no longer than ours
    (a longer one means we do not know Tango's rules, so nothing is proved)."""
    stated = error.stated_window_seconds
    if stated is None or stated > our_window_seconds:
        return None
    return stated


def last_sent_before_our_call(
    error: TangoCooldownError, probe_answer_since_seconds: float | None
) -> bool:
    """Condition 3's veto: does the last-sent time show a resend before our call started?

    Durations only, each on one clock. On Tango's: the shortest the last resend's age can be
    (its "now" at its earliest minus the last-sent time at its latest, at the two texts'
    precision). On ours: the time from the start of our earliest unresolved call to the
    probe's answer (Redis's clock), the longest Tango's judgement can have come after that
    start. An age longer than that means the resend came before our call started: someone
    else resent, whatever RESEND_EXCLUSIVE promised. Coarse or missing times show nothing.
    """
    if probe_answer_since_seconds is None:
        return False
    if error.last_sent_at is None or error.tango_now is None:
        return False
    shortest_age = (error.tango_now.at - error.last_sent_at.latest).total_seconds()
    return shortest_age > probe_answer_since_seconds


def refusal_proves_sent(
    error: TangoCooldownError,
    our_window_seconds: float,
    marker_clear: bool,
    probe_answer_since_seconds: float | None,
) -> bool:
    """All four conditions, given the marker's verdict on 2 and 4 (`marker_clear`)."""
    return (
        marker_clear
        and refusal_window_seconds(error, our_window_seconds) is not None
        and not last_sent_before_our_call(error, probe_answer_since_seconds)
    )
