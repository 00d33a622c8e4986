"""The gate's rate-limit accounting, on real Redis: every call to Tango takes a slot and enters
the same sliding window, and no slot is taken twice or lost; and the order's window it takes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.support.redis_db import TEST_REDIS_URL
from worker.state.gate import CallGate, Verdict
from worker.state.keys import RedisKeys
from worker.state.records import RecordStore, ResendRecord

KEYS = RedisKeys("gate-test")
ORDER = "RA251125-9301-{:02d}"


@pytest.fixture
def client(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    yield redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


def gate(client: redis.Redis, rate_limit: float) -> CallGate:
    return CallGate(client, KEYS, rate_limit)


def new_request(client: redis.Redis, n: int) -> str:
    store = RecordStore(client, KEYS, 60)
    now = store._clock.now()
    record = ResendRecord(
        id=f"req-{n}", reference_order_id=ORDER.format(n), created_at=now, updated_at=now
    )
    store.create(record, None, 60, lease_seconds=5)
    return record.id


def test_a_request_refused_by_the_sliding_window_keeps_the_slot_it_advanced(
    client: redis.Redis,
) -> None:
    """Given the sliding window full (two order listings just now, at 2 calls/s), When a request
    reaches the gate, Then it is told to wait and keeps the slot it advanced the limiter for:
    coming back, it goes without advancing the limiter again (on the old code it took a
    second slot, and the first was lost to everyone)."""
    limiter = gate(client, 2.0)
    request_id = new_request(client, 1)
    now_ms = int(time.time() * 1000)
    client.zadd(KEYS.rate_recent_calls, {f"list@{now_ms - 1}": now_ms - 1, f"x@{now_ms}": now_ms})

    first = limiter.try_start(ORDER.format(1), request_id, 5.0)
    tat_after_first = int(client.get(KEYS.rate_limiter) or 0)

    assert first.verdict is Verdict.RATE and 0 < first.wait_seconds <= 1.1
    assert client.zscore(KEYS.rate_reservations, request_id) is not None
    time.sleep(first.wait_seconds + 0.01)  # the wait the gate itself prescribed
    second = limiter.try_start(ORDER.format(1), request_id, 5.0)
    assert second.verdict == "go"
    assert int(client.get(KEYS.rate_limiter) or 0) == tat_after_first, "no second slot taken"


def test_order_listings_take_a_slot_and_count_in_the_sliding_window(client: redis.Redis) -> None:
    limiter = gate(client, 1.0)
    assert limiter.reserve_slot("list") == 0.0
    assert client.zcard(KEYS.rate_recent_calls) == 1
    # The next resend finds the listing's slot taken and waits for the one after it.
    request_id = new_request(client, 2)
    verdict = limiter.try_start(ORDER.format(2), request_id, 5.0)
    assert verdict.verdict == "rate" and 0.9 < verdict.wait_seconds <= 1.1


def test_with_the_limit_off_nothing_is_counted(client: redis.Redis) -> None:
    limiter = gate(client, 0.0)
    assert limiter.reserve_slot("list") == 0.0
    assert client.zcard(KEYS.rate_recent_calls) == 0


def test_a_replayed_go_for_the_same_run_is_go_again(client: redis.Redis) -> None:
    """redis-py replays a script whose reply was lost: the run that was let through must not
    then find its own window held and wait out its hold (nor take a second slot)."""
    limiter = gate(client, 1.0)
    request_id = new_request(client, 3)
    store = RecordStore(client, KEYS, 60)
    begun = store.begin(request_id, 5.0, None)
    assert limiter.try_start(ORDER.format(3), request_id, 5.0, begun.token).verdict == "go"
    tat = client.get(KEYS.rate_limiter)
    replay = limiter.try_start(ORDER.format(3), request_id, 5.0, begun.token)
    assert replay.verdict == "go"
    assert client.get(KEYS.rate_limiter) == tat, "no second slot"
    # Another run of the same request gets no such pass.
    assert limiter.try_start(ORDER.format(3), request_id, 5.0, "other").verdict == "stale"


# The order's window as the gate takes it (these held for the window lock the gate replaced).


def test_a_go_holds_the_orders_window_for_the_hold(client: redis.Redis) -> None:
    request_id = new_request(client, 4)
    window_key = KEYS.order_window(ORDER.format(4))

    assert gate(client, 0.0).try_start(ORDER.format(4), request_id, 30.0).verdict == "go"

    assert client.get(window_key) == request_id
    assert 29_000 < client.pttl(window_key) <= 30_000


def test_a_window_held_by_another_request_defers_with_its_remaining_time(
    client: redis.Redis,
) -> None:
    request_id = new_request(client, 5)
    window_key = KEYS.order_window(ORDER.format(5))
    client.set(window_key, "someone-else", px=10_000)

    verdict = gate(client, 0.0).try_start(ORDER.format(5), request_id, 30.0)

    assert verdict.verdict == "window" and 9.0 < verdict.wait_seconds <= 10.0
    assert client.get(window_key) == "someone-else", "the deferred request changes nothing"


def test_the_hold_is_rounded_up_to_whole_milliseconds(client: redis.Redis) -> None:
    request_id = new_request(client, 6)

    assert gate(client, 0.0).try_start(ORDER.format(6), request_id, 0.0001).verdict == "go"

    # 0.1 ms rounds up to 1 ms, never down to 0 (which Redis would refuse).
    assert client.pttl(KEYS.order_window(ORDER.format(6))) in (0, 1, -2)


def test_windows_of_different_orders_are_independent(client: redis.Redis) -> None:
    limiter = gate(client, 0.0)
    first, second = new_request(client, 7), new_request(client, 8)

    assert limiter.try_start(ORDER.format(7), first, 30.0).verdict == "go"
    assert limiter.try_start(ORDER.format(8), second, 30.0).verdict == "go"


def test_a_short_window_opens_again_on_its_own(client: redis.Redis) -> None:
    """Redis alone judges expiry: after a 50 ms hold the order may call again soon after."""
    limiter = gate(client, 0.0)
    request_id = new_request(client, 9)
    assert limiter.try_start(ORDER.format(9), request_id, 0.05).verdict == "go"
    deadline = time.monotonic() + 2.0
    pause = threading.Event()  # never set: only its timeout is used, between polls
    while limiter.try_start(ORDER.format(9), request_id, 30.0).verdict != "go":
        assert time.monotonic() < deadline, "the 50 ms window never expired"
        pause.wait(0.01)


def race_once(order: str, request_id: str, contenders: int) -> list[str]:
    """Release `contenders` threads at once, each with its own client, each asking the gate to
    start the same request; their verdicts."""
    barrier = threading.Barrier(contenders)
    verdicts: list[str] = []

    def contend() -> None:
        with redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True) as own_client:
            own = gate(own_client, 0.0)  # as a separate worker would
            barrier.wait(timeout=5)
            verdicts.append(own.try_start(order, request_id, 30.0).verdict)

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return verdicts


@pytest.mark.parametrize("contenders", [2, 8])
def test_racing_starts_let_exactly_one_through(client: redis.Redis, contenders: int) -> None:
    """Given N workers released at once, each asking the gate to start the same request (its
    message delivered twice, say), Then exactly one goes and the others wait for the window."""
    for round_number in range(10):
        request_id = new_request(client, 10 + round_number)
        order = ORDER.format(10 + round_number)

        verdicts = race_once(order, request_id, contenders)

        assert sorted(verdicts) == ["go"] + ["window"] * (contenders - 1)
        assert client.get(KEYS.order_window(order)) == request_id
