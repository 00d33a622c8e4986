"""The call: one send to Tango's resend endpoint, on the slot and window the gate granted,
and what its answer says of when it could have acted (the order's call marker)."""

from __future__ import annotations

import contextlib
import logging
import time

import redis

from worker.runtime import Runtime
from worker.state.call_marker import CallAnswer, MarkerCheck, MarkerResult, MarkerVerdict
from worker.state.records import ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.errors import TangoAuthenticationError, TangoError, TangoTransientError

logger = logging.getLogger("tango_resend.executor")


def call_tango(
    runtime: Runtime, record: ResendRecord, authorization: str, probe: bool = False
) -> tuple[TangoAnswer | TangoError, float]:
    """Send the request once; returns its result and the monotonic time it was sent."""
    record.attempts += 1
    result: TangoAnswer | TangoError
    started_at = time.monotonic()
    try:
        if probe:
            result = runtime.tango.resend(
                record.reference_order_id, record.request, authorization, probe=True
            )
        else:
            result = runtime.tango.resend(record.reference_order_id, record.request, authorization)
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
