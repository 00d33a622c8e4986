"""`finish`: the final record stored, the request taken off its order's queue and the next one
promoted; never twice. (worker.state.records against a real Redis.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from tests.support.record_store import (
    EMAIL,
    KEYS,
    MARGIN,
    ORDER,
    T0,
    TTL,
    as_status,
    create,
    due,
    fifo,
    new_record,
    pending,
)
from tests.support.redis_db import redis_now
from worker.state.records import RecordStore, ResendStatus


@pytest.mark.parametrize("final", [ResendStatus.SENT, ResendStatus.FAILED])
def test_finish_stores_the_final_record_and_takes_it_off_its_orders_queue(
    store: RecordStore, redis_client: redis.Redis, final: ResendStatus
) -> None:
    record = new_record()
    create(store, record)
    key = KEYS.record(record.id)
    redis_client.hset(key, "calling_until", redis_now(redis_client) + 60)
    finished = record.model_copy(
        update={"status": final, "attempts": 1, "sent_at": T0 + timedelta(seconds=1)}
    )

    assert store.finish(finished, MARGIN) is True

    assert store.get(record.id) == finished
    assert redis_client.hget(key, "status") == final.value
    assert redis_client.hexists(key, "calling_until") is False
    assert TTL - 5 <= redis_client.ttl(key) <= TTL
    assert due(redis_client, record.id) is None
    assert fifo(redis_client) == []
    assert pending(redis_client) == {}
    assert store.ids_for_order(ORDER) == [record.id]


@pytest.mark.parametrize("status", [ResendStatus.QUEUED, ResendStatus.DEFERRED])
def test_finish_rejects_a_status_that_is_not_final(
    store: RecordStore, redis_client: redis.Redis, status: ResendStatus
) -> None:
    record = new_record()
    create(store, record)

    with pytest.raises(ValueError, match="final"):
        store.finish(as_status(record, status), MARGIN)

    assert fifo(redis_client) == [record.id]


def test_finishing_twice_is_refused_the_second_time(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record()
    create(store, first)
    create(store, second)
    assert store.finish(as_status(first, ResendStatus.SENT), MARGIN) is True
    second_due = due(redis_client, second.id)

    assert store.finish(as_status(first, ResendStatus.FAILED), MARGIN) is False

    stored = store.get(first.id)
    assert stored is not None
    assert stored.status is ResendStatus.SENT
    assert due(redis_client, second.id) == second_due


def test_finish_of_an_unknown_record_is_refused(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    assert store.finish(as_status(new_record(), ResendStatus.SENT), MARGIN) is False

    assert redis_client.keys("test:request:*") == []


def test_finish_keeps_a_pending_entry_that_points_at_another_request(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record(request=EMAIL)
    create(store, record)
    redis_client.hset(KEYS.order_pending(ORDER), record.fingerprint(), "someone-else")

    assert store.finish(as_status(record, ResendStatus.SENT), MARGIN)

    # The hash earlier versions kept: an entry of another request is not this one's to drop.
    assert redis_client.hgetall(KEYS.order_pending(ORDER)) == {record.fingerprint(): "someone-else"}


def test_finishing_a_request_behind_the_head_leaves_the_head_alone(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    head, behind = new_record(), new_record()
    create(store, head)
    create(store, behind)
    head_due = due(redis_client, head.id)

    assert store.finish(as_status(behind, ResendStatus.FAILED), MARGIN)

    assert fifo(redis_client) == [head.id]
    assert due(redis_client, head.id) == head_due
