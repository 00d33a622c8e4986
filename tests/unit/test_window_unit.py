"""Unit tests for worker.state.window and the `set_window` Lua function every record script shares
(`worker/state/lua/lib/set_window.lua`), against a real Redis: re-anchoring and dropping an
order's window, owner only. (Taking the window is the gate's: tests/unit/test_gate_unit.py.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from worker.state.keys import RedisKeys
from worker.state.scripts import helper_source
from worker.state.window import window_milliseconds

KEYS = RedisKeys("test")
ORDER = "RA180426-1401-64"
WINDOW_KEY = KEYS.order_window(ORDER)

SetWindow = Callable[[str, str], bool]


@pytest.fixture
def set_window(redis_client: redis.Redis) -> SetWindow:
    """`set_window(owner, action)`: action 'release' or a number of milliseconds."""
    script = redis_client.register_script(
        helper_source("set_window") + "return set_window(KEYS[1], ARGV[1], ARGV[2])"
    )

    def run(owner: str, action: str) -> bool:
        return bool(script(keys=[WINDOW_KEY], args=[owner, action]))

    return run


def reanchor(set_window: SetWindow, owner: str, seconds: float) -> bool:
    return set_window(owner, str(window_milliseconds(seconds)))


def hold(redis_client: redis.Redis, owner: str, seconds: float) -> None:
    """The window as the gate leaves it: taken by `owner` for `seconds`."""
    redis_client.set(WINDOW_KEY, owner, px=window_milliseconds(seconds))


def test_window_milliseconds_rounds_up_and_never_to_zero() -> None:
    # 0.1 ms rounds up to 1 ms, never down to 0 (which Redis would refuse).
    assert window_milliseconds(0.0001) == 1
    assert window_milliseconds(0.0) == 1
    assert window_milliseconds(10.0005) == 10_001
    assert window_milliseconds(30.0) == 30_000


def test_only_the_owner_reanchors(set_window: SetWindow, redis_client: redis.Redis) -> None:
    hold(redis_client, "req-a", 60.0)

    assert reanchor(set_window, "req-b", 1.0) is False
    assert redis_client.pttl(WINDOW_KEY) > 59_000
    assert redis_client.get(WINDOW_KEY) == "req-a"

    assert reanchor(set_window, "req-a", 30.0) is True
    assert 29_000 < redis_client.pttl(WINDOW_KEY) <= 30_000
    assert redis_client.get(WINDOW_KEY) == "req-a"


def test_reanchor_can_lengthen_the_window(set_window: SetWindow, redis_client: redis.Redis) -> None:
    hold(redis_client, "req-a", 5.0)

    assert reanchor(set_window, "req-a", 60.0) is True

    assert redis_client.pttl(WINDOW_KEY) > 59_000


def test_reanchor_recreates_a_window_whose_hold_lapsed(
    set_window: SetWindow, redis_client: redis.Redis
) -> None:
    """Given our hold expired during a slow call, When Tango answers, Then the window exists."""
    hold(redis_client, "req-a", 30.0)
    redis_client.delete(WINDOW_KEY)  # the hold lapsed

    assert reanchor(set_window, "req-a", 30.0) is True

    assert redis_client.get(WINDOW_KEY) == "req-a"
    assert 29_000 < redis_client.pttl(WINDOW_KEY) <= 30_000


def test_reanchor_does_not_take_a_window_someone_else_took_meanwhile(
    set_window: SetWindow, redis_client: redis.Redis
) -> None:
    hold(redis_client, "req-a", 30.0)
    assert set_window("req-a", "release") is True
    hold(redis_client, "req-b", 30.0)

    assert reanchor(set_window, "req-a", 30.0) is False
    assert redis_client.get(WINDOW_KEY) == "req-b"


def test_only_the_owner_releases(set_window: SetWindow, redis_client: redis.Redis) -> None:
    hold(redis_client, "req-a", 30.0)

    assert set_window("req-b", "release") is False
    assert redis_client.get(WINDOW_KEY) == "req-a"

    assert set_window("req-a", "release") is True
    assert redis_client.get(WINDOW_KEY) is None


def test_releasing_an_open_window_is_a_no_op(set_window: SetWindow) -> None:
    assert set_window("req-a", "release") is False


def test_no_key_or_no_action_changes_nothing(
    set_window: SetWindow, redis_client: redis.Redis
) -> None:
    hold(redis_client, "req-a", 30.0)

    assert set_window("req-a", "") is False

    assert redis_client.get(WINDOW_KEY) == "req-a"
    assert redis_client.pttl(WINDOW_KEY) > 29_000
