"""The call: one send to Tango's resend endpoint, on the slot and window the gate granted.

The gate marked the call in flight until `calling_until` (the gate's moment plus the longest
call); past it, a replacement run may probe. So the call is bound as a whole, not read by
read: it is not sent at all once half that bound has gone by since the gate (a process paused
or starved between the gate and the send), and whatever is left (name resolution, connect,
the answer's body) must be over a margin before the bound (`worker.tango.deadline`).
"""

from __future__ import annotations

import contextlib
import time

from worker.runtime import Runtime
from worker.state.records import ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.deadline import CallDeadline, call_deadline
from worker.tango.errors import TangoError, TangoTransientError

# The call is over this long before `calling_until`: the gate's reply took some time to
# arrive, so the worker's "through the gate" is a little later than Redis's.
_DONE_MARGIN_SECONDS = 0.25


def deadline_after_gate(through_gate: float, call_bound_seconds: float) -> CallDeadline:
    """The send-by and done-by times of a call that passed the gate at `through_gate`
    (monotonic), bound to `call_bound_seconds` after it."""
    return CallDeadline(
        send_by=through_gate + call_bound_seconds / 2,
        done_by=through_gate + call_bound_seconds - _DONE_MARGIN_SECONDS,
    )


def call_tango(
    runtime: Runtime,
    record: ResendRecord,
    authorization: str,
    probe: bool = False,
    through_gate: float | None = None,
) -> tuple[TangoAnswer | TangoError, float]:
    """Send the request once; returns its result and the monotonic time it was sent.
    `through_gate`: the monotonic time the gate let it through (None: not bound)."""
    result: TangoAnswer | TangoError
    deadline = (
        None
        if through_gate is None
        else deadline_after_gate(through_gate, runtime.tango.longest_call_seconds)
    )
    started_at = time.monotonic()
    if deadline is not None and started_at > deadline.send_by:
        # Too late to be sure the call is over before the gate's bound: not sent, so never
        # ambiguous, and Tango saw nothing.
        late = started_at - (through_gate or started_at)
        return _not_sent(f"not sent: {late:.3f}s passed between the gate and the send"), started_at
    record.attempts += 1
    try:
        with call_deadline(deadline) if deadline is not None else contextlib.nullcontext():
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


def _not_sent(message: str) -> TangoTransientError:
    return TangoTransientError(message, ambiguous=False)
