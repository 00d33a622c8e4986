"""The fleet's knowledge that Tango is down, kept in Redis so the fleet notices an outage once.

When a call fails for a reason the whole fleet shares (Tango unreachable, our credentials
refused), the worker that met it marks Tango down. While the mark holds, one call per
interval tests Tango (whoever takes the test slot first) and every other request waits
without calling. The test call's success clears the mark; the waiting requests then go
through the gate as ever, so rate-limit slots hold and nothing bursts.

Each process also caches the mark for a moment (`OUTAGE_CACHE_SECONDS`): a healthy fleet
pays one read a second per process for it, not one per request.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import redis

from worker.state.keys import RedisKeys

OUTAGE_CACHE_SECONDS = 1.0
# A mark nobody refreshes (every worker gone) ends by itself after this long, at least.
_MIN_MARK_TTL_SECONDS = 300
# How often one process writes Tango's last success to Redis at most.
_SUCCESS_WRITE_SECONDS = 5.0
_WAITING_GRACE_SECONDS = 5.0
# Every key of ours expires: a fleet silent this long has no last success worth showing.
_LAST_SUCCESS_TTL_SECONDS = 30 * 86400


class OutageReason(StrEnum):
    """Why Tango is marked down: the `reason` label of the outage metrics, and the words of
    the waiting state."""

    UNREACHABLE = "unreachable"  # refused connections, DNS, TLS, connect timeouts
    CREDENTIALS_REFUSED = "credentials_refused"  # 401/403 on authentication, Basic or OAuth

    @property
    def words(self) -> str:
        if self is OutageReason.UNREACHABLE:
            return "Tango unreachable"
        return "credentials refused"


@dataclass(frozen=True)
class Outage:
    """Tango marked down: why, since when (epoch seconds), the last error and URL, and how
    many calls in a row met it."""

    reason: OutageReason
    since: float
    detail: str
    url: str
    failures: int

    def waiting_reason(self) -> str:
        """The waiting state in words: "waiting: Tango unreachable since 14:02 (…)"."""
        since = datetime.fromtimestamp(self.since, UTC).strftime("%H:%M")
        return f"waiting: {self.reason.words} since {since} UTC ({self.detail})"


class TangoOutage:
    """The fleet's outage mark, its test slot, and Tango's last success."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, Outage | None] | None = None
        self._success_written = -_SUCCESS_WRITE_SECONDS
        self.last_success: float | None = None  # this process's own, epoch seconds

    def current(self) -> Outage | None:
        """The mark, read from Redis at most once a second per process."""
        with self._lock:
            cached = self._cached
        if cached is not None and self._monotonic() - cached[0] < OUTAGE_CACHE_SECONDS:
            return cached[1]
        outage = self.read()
        with self._lock:
            self._cached = (self._monotonic(), outage)
        return outage

    def read(self) -> Outage | None:
        """The mark as Redis holds it now."""
        fields = self._client.hgetall(self._keys.tango_outage)
        if not fields or "reason" not in fields:
            return None
        try:
            reason = OutageReason(str(fields["reason"]))
        except ValueError:
            return None
        return Outage(
            reason=reason,
            since=float(fields.get("since", self._clock())),
            detail=str(fields.get("detail", "")),
            url=str(fields.get("url", "")),
            failures=int(float(fields.get("failures", 1))),
        )

    def mark_down(self, reason: OutageReason, detail: str, url: str, keep_seconds: float) -> Outage:
        """Mark Tango down (or keep it marked), counting one more failed call.

        Args:
            reason: why.
            detail: the last error, without credentials.
            url: the URL called, without credentials.
            keep_seconds: how long the mark holds unless refreshed or cleared.
        """
        key = self._keys.tango_outage
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "since", repr(self._clock()))
            # A reason change (unreachable, then credentials refused) restarts the outage.
            pipe.hset(key, mapping={"reason": reason.value, "detail": detail, "url": url})
            pipe.hincrby(key, "failures", 1)
            pipe.expire(key, max(int(keep_seconds), _MIN_MARK_TTL_SECONDS))
            pipe.execute()
        outage = self.read() or Outage(reason, self._clock(), detail, url, 1)
        with self._lock:
            self._cached = (self._monotonic(), outage)
        return outage

    def mark_up(self) -> bool:
        """Tango answered: clear the mark (True when there was one) and note the success."""
        now = self._clock()
        self.last_success = now
        with self._lock:
            cached = self._cached
            self._cached = (self._monotonic(), None)
        had_mark = cached is None or cached[1] is not None
        if had_mark:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.delete(self._keys.tango_outage)
                pipe.delete(self._keys.tango_outage_test)
                pipe.set(self._keys.tango_last_success, repr(now), ex=_LAST_SUCCESS_TTL_SECONDS)
                deleted, _, _ = pipe.execute()
            self._success_written = self._monotonic()
            return bool(deleted)
        if self._monotonic() - self._success_written >= _SUCCESS_WRITE_SECONDS:
            self._success_written = self._monotonic()
            with contextlib.suppress(redis.RedisError):  # a gauge only: never fails a run
                self._client.set(
                    self._keys.tango_last_success, repr(now), ex=_LAST_SUCCESS_TTL_SECONDS
                )
        return False

    def take_test(self, interval_seconds: float) -> bool:
        """Take the one test call of this interval; False when another worker has it."""
        taken = self._client.set(
            self._keys.tango_outage_test, "1", nx=True, px=max(int(interval_seconds * 1000), 1)
        )
        return bool(taken)

    def note_waiting(self, reason: OutageReason, request_id: str, until: float) -> None:
        """A request waits on the outage until `until` (epoch seconds), for the metric."""
        key = self._keys.outage_waiting(reason.value)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", self._clock())
            # A little past its wake-up: it counts until it parks again or goes.
            pipe.zadd(key, {request_id: until + _WAITING_GRACE_SECONDS})
            pipe.expire(key, max(int(until - self._clock()) + 60, 60))
            pipe.execute()

    def note_not_waiting(self, request_id: str) -> None:
        """The request no longer waits on an outage (one call: cheap only while one holds)."""
        with self._client.pipeline(transaction=False) as pipe:
            for reason in OutageReason:
                pipe.zrem(self._keys.outage_waiting(reason.value), request_id)
            pipe.execute()

    def waiting_counts(self) -> dict[OutageReason, int]:
        """How many requests wait on an outage, by reason (their waits not yet over)."""
        now = self._clock()
        with self._client.pipeline(transaction=False) as pipe:
            for reason in OutageReason:
                pipe.zcount(self._keys.outage_waiting(reason.value), now, "+inf")
            counts = pipe.execute()
        return {reason: int(n) for reason, n in zip(OutageReason, counts, strict=True)}

    def last_success_at(self) -> float | None:
        """The fleet's last success as Redis holds it (written by each process at most every
        few seconds), or None before any."""
        stored = self._client.get(self._keys.tango_last_success)
        return float(stored) if stored is not None else None
