"""After a request is submitted: read it, wait for its outcome, or cancel it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis

from worker.core.errors import RedisUnavailable, TangoResendError
from worker.resend.cancellation import cancel_resend_detailed
from worker.runtime import current_runtime
from worker.state.records import CancelResult, ResendRecord

logger = logging.getLogger("tango_resend.producer")

# Polling a record costs one read; from 50 ms, doubling up to 1 s, a request that ends in its
# first call is seen at once and a long wait costs about one read a second.
_FIRST_POLL_SECONDS = 0.05
_LONGEST_POLL_SECONDS = 1.0


class UnknownRequest(TangoResendError, LookupError):
    """Raised by `wait_for_outcome` when no request has the id (never existed, or expired)."""


def cancel_resend(request_id: str, *, by: str | None = None) -> CancelResult:
    """Cancel a queued or deferred request before it is sent, for every caller that shares it
    (identical requests merged into it): `cancel_resend_detailed` says how many do. The record
    keeps who (`by`, e.g. "api ops-bot"; "python" when not given) and when.

    Returns:
        A `CancelResult` (a `str` equal to its word): `cancelled`; or `in_flight` when its
        call to Tango is under way, or that call's outcome is unknown until a probe settles
        it (too late to stop); or the final status it already had (`sent`, `failed`,
        `cancelled`); or `unknown` when no request has this id (never existed, or expired).

    Raises:
        RedisUnavailable: Redis could not be reached; nothing was cancelled.
    """
    return cancel_resend_detailed(request_id, by=by).result


def get_resend(request_id: str) -> ResendRecord | None:
    """The record of a request, or None when unknown or expired.

    A final status is returned only once it is on REDIS_WAIT_REPLICAS replicas (when set):
    a failover could still take it back.

    Raises:
        RedisUnavailable: Redis could not be reached, or the request's final status is not
            on the replicas yet.
    """
    try:
        return current_runtime().records.get_reported(request_id)
    except redis.RedisError as error:
        raise RedisUnavailable(f"could not read the request: {error}") from error


def wait_for_outcome(request_id: str, timeout: float) -> ResendRecord:
    """Wait until a request is final (sent, failed or cancelled) and return its record.

    Args:
        request_id: the id `enqueue_resend` returned.
        timeout: seconds to wait at most.

    Raises:
        TimeoutError: the request was not final within `timeout` (it goes on all the same).
        UnknownRequest: no request has this id (never existed, or expired).
        RedisUnavailable: Redis could not be reached.
    """
    deadline = time.monotonic() + timeout
    for pause in _Pauses(deadline, time.monotonic):
        record = _final_or_none(request_id)
        if record is not None:
            return record
        time.sleep(pause)
    raise _timed_out(request_id, timeout)


async def wait_for_outcome_async(request_id: str, timeout: float) -> ResendRecord:
    """`wait_for_outcome` for asyncio code: each read runs in a thread and the pauses are
    awaited, so the event loop serves others meanwhile. Same arguments, result and
    exceptions."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for pause in _Pauses(deadline, loop.time):
        record = await asyncio.to_thread(_final_or_none, request_id)
        if record is not None:
            return record
        await asyncio.sleep(pause)
    raise _timed_out(request_id, timeout)


class _Pauses:
    """The pauses between reads: growing, and never past the deadline. The last read is made
    at the deadline itself, so a request final by then is never reported as a timeout."""

    def __init__(self, deadline: float, now: Callable[[], float]) -> None:
        self._deadline, self._now, self._next = deadline, now, _FIRST_POLL_SECONDS
        self._done = False

    def __iter__(self) -> _Pauses:
        return self

    def __next__(self) -> float:
        if self._done:
            raise StopIteration
        left = self._deadline - self._now()
        if left <= 0:
            self._done = True  # one last read, then stop
            return 0.0
        pause = min(self._next, left)
        self._next = min(self._next * 2, _LONGEST_POLL_SECONDS)
        return pause


def _final_or_none(request_id: str) -> ResendRecord | None:
    record = get_resend(request_id)
    if record is None:
        raise UnknownRequest(f"no request {request_id!r} (unknown or expired)")
    return record if record.status.is_final else None


def _timed_out(request_id: str, timeout: float) -> TimeoutError:
    return TimeoutError(f"request {request_id} is not final after {timeout:g} s")
