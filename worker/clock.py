"""The one clock window arithmetic uses: the Redis server's, shared by every worker host."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import redis


class Clock(Protocol):
    def now(self) -> datetime: ...


class RedisClock:
    """`TIME` on the Redis server, so hosts whose own clocks disagree still agree on "now"."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def now(self) -> datetime:
        seconds, microseconds = self._client.time()
        return datetime.fromtimestamp(int(seconds) + int(microseconds) / 1_000_000, tz=UTC)
