"""The gate: the order's window and a rate-limit slot for this run's call, or the wait for
them (the window held by another call, a slot further off, an earlier request's turn)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import assert_never

from worker.resend.decision import ResendPolicy, delay_for_held_window
from worker.resend.run.begin import Done, HeldRun
from worker.resend.run.settle import Settler
from worker.runtime import Runtime
from worker.state.gate import GateVerdict, Verdict
from worker.state.metrics import DeferralReason

_SHORT_RATE_WAIT_SECONDS = 0.1
_SHORT_RATE_WAIT_TRIES = 4
# A run wakes this much before a reserved rate-limit slot and waits out the rest in-thread,
# so the call starts on its slot despite the hop through the scheduler and the broker.
_RATE_WAKE_AHEAD_SECONDS = 0.05


def pass_gate(
    runtime: Runtime,
    policy: ResendPolicy,
    run: HeldRun,
    probe: bool = False,
    first: GateVerdict | None = None,
) -> GateVerdict:
    """Pass the gate (`first`: the verdict it already gave this run), waiting in-thread for a
    rate slot a moment away."""
    record = run.record
    # The window is held for a window plus the longest call; the call counts as in flight
    # (`calling_until`) only for the longest call itself, so that after a worker's death
    # mid-call the replacement can probe inside Tango's window.
    call_seconds = runtime.tango.longest_call_seconds
    hold = policy.window_seconds + call_seconds
    order, request_id = record.reference_order_id, record.id
    verdict = first or runtime.gate.try_start(
        order, request_id, hold, run.token, call_seconds=call_seconds, probe=probe
    )
    for _ in range(_SHORT_RATE_WAIT_TRIES):
        # A rate slot a moment away is waited for here: a round trip through the scheduler
        # and the broker would cost more than the wait, and make the call late for its slot.
        if verdict.verdict is not Verdict.RATE or verdict.wait_seconds > _SHORT_RATE_WAIT_SECONDS:
            break
        time.sleep(verdict.wait_seconds)
        verdict = runtime.gate.try_start(
            order, request_id, hold, run.token, call_seconds=call_seconds, probe=probe
        )
    return verdict


def not_now(settler: Settler, run: HeldRun, verdict: GateVerdict, now: datetime) -> Done:
    """Carry out a gate verdict other than `go`."""
    record, metrics = run.record, settler.runtime.metrics
    match verdict.verdict:
        case Verdict.FINAL | Verdict.UNKNOWN | Verdict.STALE:
            return Done(None)
        case Verdict.TURN:
            metrics.deferral(DeferralReason.TURN)
            return settler.wait_for_turn(run, now)
        case Verdict.WINDOW:
            metrics.deferral(DeferralReason.WINDOW)
            record.window_deferrals += 1
            delay = delay_for_held_window(verdict.wait_seconds, settler.policy, settler.rand)
            return settler.defer(run, delay, now, "the order's window is held")
        case Verdict.RATE:
            # The slot is reserved for this request alone; wake a little before it and wait
            # out the rest here, so the call starts on its slot.
            metrics.deferral(DeferralReason.RATE_LIMIT)
            delay = max(verdict.wait_seconds - _RATE_WAKE_AHEAD_SECONDS, 0.001)
            return settler.defer(run, delay, now, "waiting for its rate-limit slot")
        case Verdict.GO:
            raise AssertionError("a `go` is carried out by calling Tango, not here")
        case unreachable:
            assert_never(unreachable)
