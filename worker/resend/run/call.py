"""The call: one send to Tango's resend endpoint, on the slot and window the gate granted."""

from __future__ import annotations

import contextlib
import time

import redis

from worker.runtime import Runtime
from worker.state.records import ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.errors import TangoError, TangoTransientError


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
