"""worker/state/redis_health.py: which maxmemory policies are unsafe, and the start-up warning."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from worker.state.redis_health import eviction_policy, evicts, warn_if_evicting


class FakeRedis:
    """Answers `INFO memory` with a given dict, or raises a given error."""

    def __init__(self, info: dict[str, Any] | Exception) -> None:
        self._info = info

    def info(self, section: str) -> dict[str, Any]:
        assert section == "memory"
        if isinstance(self._info, Exception):
            raise self._info
        return self._info


@pytest.mark.parametrize(
    ("policy", "unsafe"),
    [
        ("noeviction", False),
        ("allkeys-lru", True),
        ("allkeys-lfu", True),
        ("allkeys-random", True),
        ("volatile-lru", True),  # every key of ours but the broker's has a TTL
        ("volatile-ttl", True),
        (None, False),  # unknown: not assumed unsafe
    ],
)
def test_only_noeviction_is_safe(policy: str | None, unsafe: bool) -> None:
    assert evicts(policy) is unsafe


def test_the_policy_is_read_from_info_memory() -> None:
    client: Any = FakeRedis({"maxmemory_policy": "allkeys-lru", "used_memory": 1})
    assert eviction_policy(client) == "allkeys-lru"
    assert eviction_policy(FakeRedis({"used_memory": 1})) is None  # type: ignore[arg-type]


def test_an_evicting_policy_is_logged_as_a_warning_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client: Any = FakeRedis({"maxmemory_policy": "volatile-lru"})
    with caplog.at_level(logging.INFO, logger="tango_resend.redis"):
        assert warn_if_evicting(client) == "volatile-lru"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "'volatile-lru'" in record.getMessage() and "noeviction" in record.getMessage()


def test_noeviction_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    client: Any = FakeRedis({"maxmemory_policy": "noeviction"})
    with caplog.at_level(logging.INFO, logger="tango_resend.redis"):
        assert warn_if_evicting(client) == "noeviction"
    assert caplog.records == []


def test_a_redis_that_cannot_be_asked_never_stops_a_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client: Any = FakeRedis(redis.ConnectionError("refused"))
    with caplog.at_level(logging.INFO, logger="tango_resend.redis"):
        assert warn_if_evicting(client) is None
    assert "could not read" in caplog.text
