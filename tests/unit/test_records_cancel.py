"""`cancel`: an unfinished request cancelled unless a call is in flight; a finished one keeps
its status. (worker.state.records against a real Redis.)"""

from __future__ import annotations

import math

import pytest
import redis

from tests.support.record_store import (
    KEYS,
    MARGIN,
    ORDER,
    T0,
    TOLERANCE,
    as_status,
    create,
    due,
    fifo,
    new_record,
    pending,
)
from tests.support.redis_db import redis_now
from worker.state.records import RecordStore, ResendStatus


@pytest.mark.parametrize(
    "status", [ResendStatus.QUEUED, ResendStatus.DEFERRED, ResendStatus.RETRYING]
)
def test_cancel_of_an_unfinished_request(
    store: RecordStore, redis_client: redis.Redis, status: ResendStatus
) -> None:
    record = new_record()
    create(store, record)
    if status is not ResendStatus.QUEUED:
        assert store.save(as_status(record, status), due_at=T0.timestamp())

    assert store.cancel(record.id, MARGIN) == "cancelled"

    stored = store.get(record.id)
    assert stored is not None
    assert stored.status is ResendStatus.CANCELLED
    assert stored.reason == "cancelled before it was sent"
    assert redis_client.hget(KEYS.record(record.id), "status") == "cancelled"
    assert due(redis_client, record.id) is None
    assert fifo(redis_client) == []
    assert pending(redis_client) == {}
    assert store.ids_for_order(ORDER) == [record.id]


def test_cancelling_the_head_promotes_the_next_request(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    head, behind = new_record(), new_record()
    create(store, head)
    create(store, behind)

    now = redis_now(redis_client)
    redis_client.set(KEYS.order_window(ORDER), "x", px=1500)
    assert store.cancel(head.id, MARGIN) == "cancelled"

    assert fifo(redis_client) == [behind.id]
    assert due(redis_client, behind.id) == pytest.approx(now + 1.5 + MARGIN, abs=TOLERANCE)


def test_cancelling_a_request_behind_the_head_keeps_the_others_waiting(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    head, middle, last = new_record(), new_record(), new_record()
    for record in (head, middle, last):
        create(store, record)
    head_due = due(redis_client, head.id)

    assert store.cancel(middle.id, MARGIN) == "cancelled"

    assert fifo(redis_client) == [head.id, last.id]
    assert due(redis_client, head.id) == head_due
    assert due(redis_client, last.id) == math.inf


def test_cancel_is_refused_while_a_call_is_in_flight_or_cut_off_and_allowed_once_it_is_stored(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    head, behind = new_record(), new_record()
    create(store, head)
    create(store, behind)
    key = KEYS.record(head.id)
    before = redis_client.hgetall(key)
    head_due = due(redis_client, head.id)
    redis_client.hset(key, "calling_until", redis_now(redis_client) + 60)

    assert store.cancel(head.id, MARGIN) == "in_flight"

    assert redis_client.hget(key, "status") == "queued"
    assert redis_client.hgetall(key) == {
        **before,
        "calling_until": redis_client.hget(key, "calling_until"),
    }
    assert due(redis_client, head.id) == head_due
    assert due(redis_client, behind.id) == math.inf
    assert fifo(redis_client) == [head.id, behind.id]

    # Past its bound and still there: its worker died mid-call, and whether Tango acted is
    # unknown until a run probes and stores the outcome.
    redis_client.hset(key, "calling_until", redis_now(redis_client) - 1)
    assert store.cancel(head.id, MARGIN) == "in_flight"

    redis_client.hdel(key, "calling_until")  # a run stored the call's outcome
    assert store.cancel(head.id, MARGIN) == "cancelled"
    assert redis_client.hexists(key, "calling_until") is False
    assert fifo(redis_client) == [behind.id]


@pytest.mark.parametrize("final", [ResendStatus.SENT, ResendStatus.FAILED])
def test_cancel_of_a_finished_request_returns_its_status(
    store: RecordStore, final: ResendStatus
) -> None:
    record = new_record()
    create(store, record)
    store.finish(as_status(record, final), MARGIN)

    assert store.cancel(record.id, MARGIN) == final.value

    stored = store.get(record.id)
    assert stored is not None
    assert stored.status is final


def test_cancelling_twice_returns_cancelled_both_times(store: RecordStore) -> None:
    record = new_record()
    create(store, record)

    assert store.cancel(record.id, MARGIN) == "cancelled"
    assert store.cancel(record.id, MARGIN) == "cancelled"


def test_cancel_of_an_unknown_request(store: RecordStore) -> None:
    assert store.cancel("nope", MARGIN) == "unknown"


def test_finish_after_a_cancel_is_refused(store: RecordStore) -> None:
    record = new_record()
    create(store, record)
    store.cancel(record.id, MARGIN)

    assert store.finish(as_status(record, ResendStatus.SENT), MARGIN) is False

    stored = store.get(record.id)
    assert stored is not None
    assert stored.status is ResendStatus.CANCELLED
