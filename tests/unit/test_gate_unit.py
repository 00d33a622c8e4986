"""The gate's rate-limit accounting, on real Redis: every call to Tango takes a slot and enters
the same sliding window, and no slot is taken twice or lost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from worker.gate import CallGate
from worker.keys import RedisKeys
from worker.records import FINAL_STATUSES, RecordStore, ResendRecord

KEYS = RedisKeys("gate-test")
ORDER = "RA251125-9301-{:02d}"


@pytest.fixture
def client(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    yield redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


def gate(client: redis.Redis, rate_limit: float) -> CallGate:
    return CallGate(client, KEYS, rate_limit, FINAL_STATUSES)


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

    assert first.verdict == "rate" and 0 < first.wait_seconds <= 1.1
    assert client.get(KEYS.rate_reservation(request_id)) is not None
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
