"""The one clock window arithmetic uses: the Redis server's, shared by every worker host."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

import redis

# How often the clock asks Redis for the time again. In between, Redis's time is advanced by
# this host's monotonic clock, which measures durations well even when its wall clock is off.
RESYNC_SECONDS = 5.0


class Clock(Protocol):
    def now(self) -> datetime: ...


class RedisClock:
    """`TIME` on the Redis server, so hosts whose own clocks disagree still agree on "now".

    One `TIME` round trip per few seconds, not per call: between syncs, "now" is the last
    reading plus the monotonic time elapsed since (taken at the middle of the round trip).
    """

    def __init__(self, client: redis.Redis, resync_seconds: float = RESYNC_SECONDS) -> None:
        self._client = client
        self._resync_seconds = resync_seconds
        self._lock = threading.Lock()
        self._base: float | None = None
        self._base_monotonic = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), tz=UTC)

    def timestamp(self) -> float:
        """Redis's time in epoch seconds."""
        with self._lock:
            elapsed = time.monotonic() - self._base_monotonic
            if self._base is None or elapsed > self._resync_seconds:
                before = time.monotonic()
                seconds, microseconds = self._client.time()
                after = time.monotonic()
                self._base = int(seconds) + int(microseconds) / 1_000_000
                self._base_monotonic = (before + after) / 2
                elapsed = after - self._base_monotonic
            return self._base + elapsed
