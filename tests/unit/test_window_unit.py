"""Unit tests for worker.window against a real Redis: the per-order resend window lock."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from worker.keys import RedisKeys
from worker.window import OrderWindow

KEYS = RedisKeys("test")
ORDER = "RA180426-1401-64"


@pytest.fixture
def window(redis_client: redis.Redis) -> OrderWindow:
    return OrderWindow(redis_client, KEYS)


def test_an_open_window_is_acquired(window: OrderWindow, redis_client: redis.Redis) -> None:
    assert window.remaining_seconds(ORDER) == 0.0
    assert window.holder(ORDER) is None

    assert window.acquire(ORDER, "req-a", 30.0) == 0.0

    assert window.holder(ORDER) == "req-a"
    assert redis_client.get(KEYS.order_window(ORDER)) == "req-a"
    assert 29.0 < window.remaining_seconds(ORDER) <= 30.0


def test_a_held_window_reports_the_holders_remaining_time(window: OrderWindow) -> None:
    window.acquire(ORDER, "req-a", 30.0)

    remaining = window.acquire(ORDER, "req-b", 5.0)

    assert 29.0 < remaining <= 30.0
    assert window.holder(ORDER) == "req-a"  # the loser changes nothing


def test_the_owner_acquiring_again_is_told_it_is_held(window: OrderWindow) -> None:
    """Acquire is set-if-absent: even the owner gets the remaining time, not a second grant."""
    window.acquire(ORDER, "req-a", 30.0)

    assert window.acquire(ORDER, "req-a", 30.0) > 0


def test_windows_of_different_orders_are_independent(window: OrderWindow) -> None:
    assert window.acquire(ORDER, "req-a", 30.0) == 0.0
    assert window.acquire("RA180426-1401-65", "req-b", 30.0) == 0.0


def test_hold_time_is_rounded_up_to_whole_milliseconds(
    window: OrderWindow, redis_client: redis.Redis
) -> None:
    window.acquire(ORDER, "req-a", 0.0001)
    # 0.1 ms rounds up to 1 ms, never down to 0 (which Redis would refuse).
    assert redis_client.pttl(KEYS.order_window(ORDER)) in (0, 1, -2)

    window.acquire("RA180426-1401-65", "req-b", 10.0005)
    assert 10_000 <= redis_client.pttl(KEYS.order_window("RA180426-1401-65")) <= 10_001


def test_a_held_window_never_reports_zero_remaining(
    window: OrderWindow, redis_client: redis.Redis
) -> None:
    """Given a holder whose key has no TTL at all, a loser still sees it held (> 0)."""
    redis_client.set(KEYS.order_window(ORDER), "req-legacy")  # no expiry

    remaining = window.acquire(ORDER, "req-b", 30.0)

    assert remaining == 0.001
    assert window.holder(ORDER) == "req-legacy"


def test_only_the_owner_reanchors(window: OrderWindow, redis_client: redis.Redis) -> None:
    window.acquire(ORDER, "req-a", 60.0)

    assert window.reanchor(ORDER, "req-b", 1.0) is False
    assert redis_client.pttl(KEYS.order_window(ORDER)) > 59_000
    assert window.holder(ORDER) == "req-a"

    assert window.reanchor(ORDER, "req-a", 30.0) is True
    assert 29_000 < redis_client.pttl(KEYS.order_window(ORDER)) <= 30_000
    assert window.holder(ORDER) == "req-a"


def test_reanchor_can_lengthen_the_window(window: OrderWindow, redis_client: redis.Redis) -> None:
    window.acquire(ORDER, "req-a", 5.0)

    assert window.reanchor(ORDER, "req-a", 60.0) is True

    assert redis_client.pttl(KEYS.order_window(ORDER)) > 59_000


def test_reanchor_recreates_a_window_whose_hold_lapsed(
    window: OrderWindow, redis_client: redis.Redis
) -> None:
    """Given our hold expired during a slow call, When Tango answers, Then the window exists."""
    window.acquire(ORDER, "req-a", 30.0)
    redis_client.delete(KEYS.order_window(ORDER))  # the hold lapsed

    assert window.reanchor(ORDER, "req-a", 30.0) is True

    assert window.holder(ORDER) == "req-a"
    assert 29_000 < redis_client.pttl(KEYS.order_window(ORDER)) <= 30_000


def test_reanchor_does_not_take_a_window_someone_else_took_meanwhile(
    window: OrderWindow,
) -> None:
    window.acquire(ORDER, "req-a", 30.0)
    window.release(ORDER, "req-a")
    window.acquire(ORDER, "req-b", 30.0)

    assert window.reanchor(ORDER, "req-a", 30.0) is False
    assert window.holder(ORDER) == "req-b"


def test_only_the_owner_releases(window: OrderWindow) -> None:
    window.acquire(ORDER, "req-a", 30.0)

    assert window.release(ORDER, "req-b") is False
    assert window.holder(ORDER) == "req-a"

    assert window.release(ORDER, "req-a") is True
    assert window.holder(ORDER) is None
    assert window.remaining_seconds(ORDER) == 0.0
    assert window.acquire(ORDER, "req-b", 30.0) == 0.0


def test_releasing_an_open_window_is_a_no_op(window: OrderWindow) -> None:
    assert window.release(ORDER, "req-a") is False


def test_keys_live_under_the_configured_prefix(
    window: OrderWindow, redis_client: redis.Redis
) -> None:
    window.acquire(ORDER, "req-a", 30.0)

    assert redis_client.keys("*") == [f"test:window:{ORDER}"]


def test_a_short_window_opens_again_on_its_own(window: OrderWindow) -> None:
    """Redis alone judges expiry: a 50 ms hold can be taken by another owner soon after."""
    window.acquire(ORDER, "req-a", 0.05)
    deadline = time.monotonic() + 2.0
    pause = threading.Event()  # never set: only its timeout is used, between polls
    while window.acquire(ORDER, "req-b", 30.0) != 0.0:
        assert time.monotonic() < deadline, "the 50 ms window never expired"
        pause.wait(0.01)

    assert window.holder(ORDER) == "req-b"


def race_once(redis_client: redis.Redis, order: str, contenders: int) -> dict[str, float]:
    """Release `contenders` threads at once, each acquiring `order`; their results by owner."""
    barrier = threading.Barrier(contenders)
    results: dict[str, float] = {}

    def contend(owner: str) -> None:
        own_window = OrderWindow(redis_client, KEYS)  # as a separate worker would
        barrier.wait(timeout=5)
        results[owner] = own_window.acquire(order, owner, 30.0)

    threads = [threading.Thread(target=contend, args=(f"req-{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


@pytest.mark.parametrize("contenders", [2, 8])
def test_racing_acquires_have_exactly_one_winner(
    redis_client: redis.Redis, contenders: int
) -> None:
    """Given N threads released at once, When each acquires the same order, Then one wins."""
    for round_number in range(20):
        order = f"RA180426-1401-{round_number}"

        results = race_once(redis_client, order, contenders)

        winners = [owner for owner, remaining in results.items() if remaining == 0.0]
        assert len(results) == contenders
        assert len(winners) == 1
        assert OrderWindow(redis_client, KEYS).holder(order) == winners[0]
        assert all(remaining > 0 for owner, remaining in results.items() if owner != winners[0])
