"""The tests' own database on the shared Redis, and Redis's clock."""

from __future__ import annotations

import os

import redis

from tests.support.processes import free_port

# Flushed by every test that uses it; other people's tests use other database numbers.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_now(client: redis.Redis) -> float:
    """Redis's clock, in seconds (what every due time and window is judged on)."""
    seconds, microseconds = client.time()
    return int(seconds) + int(microseconds) / 1_000_000


def unreachable_redis_url() -> str:
    """A Redis URL nothing answers at: a loopback port nothing listens on right now."""
    return f"redis://127.0.0.1:{free_port()}/0"
