"""The call: one send to Tango's resend endpoint, on the slot and window the gate granted,
and what its answer says of when it could have acted (the order's call marker).

The gate marked the call in flight until `calling_until` (the gate's moment plus the longest
call); past it, a replacement run may probe. So the call is bound as a whole, not read by
read: it is not sent at all once half that bound has gone by since the gate (a process paused
or starved between the gate and the send), and whatever is left (name resolution, connect,
the answer's body) must be over a margin before the bound (`worker.tango.deadline`).
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis

from worker.runtime import Runtime
from worker.state.call_marker import CallAnswer, MarkerCheck, MarkerResult, MarkerVerdict
from worker.state.records import ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.deadline import CallDeadline, call_deadline
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoError,
    TangoNotSent,
    TangoTransientError,
)

logger = logging.getLogger("tango_resend.executor")

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
        # Redis failing here must not cost the answer in hand (the slot gate still paces).
        with contextlib.suppress(redis.RedisError):
            runtime.gate.pause(result.retry_after or runtime.gate.rate_interval_seconds)
    return result, started_at


def call_answer(result: TangoAnswer | TangoError) -> CallAnswer:
    """When the call could have acted, as its answer tells. Tango's answer (any status, a
    201, a 4xx, a 500) ends its work on the call; so does a gateway's that waited for it.
    A 401 or a 429 is refused before any resend, and a connection never made sent nothing:
    exempt. A timeout, a reset or a 502/504 leaves Tango possibly still working: unknown."""
    if isinstance(result, TangoAnswer):
        return CallAnswer.ANSWERED
    if isinstance(result, TangoAuthenticationError):
        return CallAnswer.EXEMPT
    if isinstance(result, TangoTransientError):
        if result.ambiguous:
            return CallAnswer.UNKNOWN
        if result.status == 429 or result.status is None:
            return CallAnswer.EXEMPT
    return CallAnswer.ANSWERED


def note_call_answer(
    runtime: Runtime,
    record: ResendRecord,
    gate_ms: int,
    result: TangoAnswer | TangoError,
    check: MarkerCheck | None = None,
) -> MarkerResult:
    """Write the call's answer into its order's call marker, in Lua, judging first (with
    `check`) the refusal proof's marker conditions for a refused probe.

    Redis failing here costs no answer: the run goes on to store it (or fails there, as it
    would have). The marker keeps the gate's bound, which only ever is later than the
    answer's, and an unanswered check proves nothing."""
    try:
        return runtime.call_marker.answered(
            record.reference_order_id, record.id, gate_ms, call_answer(result), check
        )
    except redis.RedisError as error:
        logger.warning(
            "request=%s order=%s call marker not written (%s); it keeps the gate's bound",
            record.id,
            record.reference_order_id,
            type(error).__name__,
        )
        return MarkerResult(MarkerVerdict.NOT_ASKED, f"Redis failed: {type(error).__name__}")


def _not_sent(message: str) -> TangoTransientError:
    return TangoNotSent(message)
