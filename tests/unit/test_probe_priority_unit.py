"""A probe goes ahead of the fleet's rate-limit reservations, on real Redis.

A probe must reach Tango inside the window an ambiguous call may have opened. Behind a backlog
of reservations it would wait one interval per reservation (at 1 call/s, 14-16 reservations
outlast a 30 s window after a timeout), reach Tango after the window and, if the first call
acted, resend a second time. The gate gives it the first moment the sliding window allows and
moves the reservations back by as much; calls over the limit stay 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import redis

from tests.support.redis_db import TEST_REDIS_URL
from worker.state.gate import CallGate, Verdict
from worker.state.keys import RedisKeys
from worker.state.records import RecordStore, ResendRecord

KEYS = RedisKeys("priority-test")
ORDER = "RA251206-2702-{:02d}"
RATE = 10.0  # calls/s: slots 108 ms apart, the sliding window 10 calls in 1.08 s


@pytest.fixture
def client(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    yield redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


def new_request(client: redis.Redis, n: int) -> str:
    store = RecordStore(client, KEYS, 60)
    now = store._clock.now()
    record = ResendRecord(
        id=f"req-{n}", reference_order_id=ORDER.format(n), created_at=now, updated_at=now
    )
    store.create(record, None, 60, lease_seconds=5)
    return record.id


def reservations(client: redis.Redis) -> list[tuple[str, float]]:
    return list(client.zrange(KEYS.rate_reservations, 0, -1, withscores=True))


def test_a_probe_goes_ahead_of_a_backlog_of_reservations_and_the_backlog_moves_back(
    client: redis.Redis,
) -> None:
    """Given 30 requests at the gate at once (one goes, 29 hold reservations up to 3 s away),
    When a probe reaches the gate, Then it goes now, not 3 s later; every reservation moves
    back so that none is within an interval of it, their spacing is kept, and the limiter
    hands out its next slot after the last of them."""
    gate = CallGate(client, KEYS, RATE)
    interval_ms = round(gate.rate_interval_seconds * 1000)
    verdicts = [gate.try_start(ORDER.format(n), new_request(client, n), 5.0) for n in range(30)]
    assert [v.verdict for v in verdicts].count(Verdict.GO) == 1
    backlog = reservations(client)
    assert len(backlog) == 29
    assert backlog[-1][1] - backlog[0][1] >= 28 * interval_ms

    probe_request = new_request(client, 99)
    probe = gate.try_start(ORDER.format(99), probe_request, 5.0, probe=True)

    assert probe.verdict is Verdict.GO, probe
    assert probe.started_at is not None
    probe_ms = probe.started_at * 1000
    moved = reservations(client)
    assert [member for member, _ in moved] == [member for member, _ in backlog]
    assert moved[0][1] >= probe_ms + interval_ms
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(moved)]
    assert min(gaps) >= interval_ms
    assert int(client.get(KEYS.rate_limiter) or 0) >= moved[-1][1] + interval_ms


def test_a_probe_behind_a_full_sliding_window_waits_only_for_it_and_keeps_its_place(
    client: redis.Redis,
) -> None:
    """Given the sliding window full (1 call/s: one call just started) and reservations
    behind it, When a probe comes, Then it waits only until the sliding window allows (about
    one interval), holds that slot ahead of every reservation, and the calls over the limit
    stay 0: no reservation is left within an interval of it."""
    gate = CallGate(client, KEYS, 1.0)
    interval_ms = round(gate.rate_interval_seconds * 1000)
    for n in range(5):
        gate.try_start(ORDER.format(n), new_request(client, n), 5.0)
    probe_request = new_request(client, 99)
    probe = gate.try_start(ORDER.format(99), probe_request, 5.0, probe=True)
    assert probe.verdict is Verdict.RATE
    assert probe.wait_seconds <= gate.rate_interval_seconds + 0.01
    slots = dict(reservations(client))
    probe_slot = slots.pop(probe_request)
    assert all(abs(slot - probe_slot) >= interval_ms for slot in slots.values())
    # Coming back at its slot, it goes (its place was kept).
    client.zadd(KEYS.rate_reservations, {probe_request: 0})  # as if its slot had come
    client.delete(KEYS.rate_recent_calls)
    again = gate.try_start(ORDER.format(99), probe_request, 5.0, probe=True)
    assert again.verdict is Verdict.GO


def test_without_a_backlog_a_probe_takes_the_next_slot_like_any_call(client: redis.Redis) -> None:
    gate = CallGate(client, KEYS, 1.0)
    probe = gate.try_start(ORDER.format(1), new_request(client, 1), 5.0, probe=True)
    assert probe.verdict is Verdict.GO and probe.started_at is not None
    nxt = gate.try_start(ORDER.format(2), new_request(client, 2), 5.0)
    assert nxt.verdict is Verdict.RATE
    assert nxt.wait_seconds >= gate.rate_interval_seconds - 0.05
