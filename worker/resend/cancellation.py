"""Cancelling a request, and saying whom it concerns.

Identical requests of an order that arrive while one is pending are merged into it, and
every caller gets the same id (docs/how-it-works.md, "Coalescing"). A cancel therefore
cancels the resend for every one of them. The answer says how many callers share the
request, so the one who cancels knows whether others depended on it (the console asks for
confirmation saying so).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import redis

from worker.core.errors import RedisUnavailable
from worker.resend import origins
from worker.resend.finished import notify_finished
from worker.runtime import current_runtime
from worker.state.records import PROMOTE_MARGIN_SECONDS, CancelResult

logger = logging.getLogger("tango_resend.producer")


@dataclass(frozen=True)
class Cancellation:
    """What a cancel did (`result`, as `cancel_resend` answers it), and how many callers
    share the request: the one that created it plus each identical request merged into it
    (0 when the request is unknown). A cancel changes the request for all of them."""

    result: CancelResult
    callers: int

    @property
    def others(self) -> int:
        """Callers besides one: those a cancel also cancels for."""
        return max(self.callers - 1, 0)


def cancel_resend_detailed(request_id: str, *, by: str | None = None) -> Cancellation:
    """Cancel a queued or deferred request before it is sent, as `cancel_resend`, and say how
    many callers share it. The record keeps who (`by`; "python" when not given) and when.

    Raises:
        RedisUnavailable: Redis could not be reached; nothing was cancelled.
    """
    runtime = current_runtime()
    records = runtime.records
    try:
        result, newly_cancelled = records.try_cancel(
            request_id, PROMOTE_MARGIN_SECONDS, by=by or origins.python(None)
        )
        # Read after the cancel: a final request takes no more merges, so this is exact for
        # one cancelled now (and the count at this moment otherwise).
        callers = 0 if result is CancelResult.UNKNOWN else records.callers_sharing(request_id)
    except redis.RedisError as error:
        raise RedisUnavailable(f"could not cancel the request: {error}") from error
    logger.info("request=%s cancel: %s (callers sharing it: %d)", request_id, result, callers)
    if newly_cancelled:
        # The cancel is stored, and counted by the same script; a Redis failure from here on
        # only costs the in-process hook (the outcome callback is owed by the script too).
        with contextlib.suppress(redis.RedisError):
            record = records.get(request_id)
            if record is not None:
                notify_finished(record)
    return Cancellation(result, callers)
