"""`save`: a running request's record and due time stored, and refused once the request is
final, cancelled or expired. (worker.state.records against a real Redis.)"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import redis

from tests.support.record_store import EMAIL, KEYS, MARGIN, T0, as_status, create, due, new_record
from tests.support.redis_db import redis_now
from worker.state.records import AttemptEntry, RecordStore, ResendStatus


def test_save_stores_the_record_and_its_due_time(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    updated = record.model_copy(
        update={
            "status": ResendStatus.DEFERRED,
            "attempts": 1,
            "cooldown_deferrals": 1,
            "next_attempt_at": T0 + timedelta(seconds=30),
            "attempt_log": [AttemptEntry(at=T0, outcome="deferred", status=409)],
        }
    )

    assert store.save(updated, due_at=T0.timestamp() + 30) is True

    assert store.get(record.id) == updated
    assert redis_client.hget(KEYS.record(record.id), "status") == "deferred"
    assert due(redis_client, record.id) == pytest.approx(T0.timestamp() + 30)


def test_save_without_a_due_time_leaves_the_score(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    score = due(redis_client, record.id)

    assert store.save(as_status(record, ResendStatus.RETRYING), due_at=None)

    assert due(redis_client, record.id) == score
    stored = store.get(record.id)
    assert stored is not None
    assert stored.status is ResendStatus.RETRYING


def test_save_can_park_a_request_to_wait_for_its_turn(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)

    assert store.save(as_status(record, ResendStatus.DEFERRED), due_at=math.inf)

    assert due(redis_client, record.id) == math.inf


def test_save_clears_calling_until_and_keeps_the_ttl_and_merges(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record(request=EMAIL)
    create(store, record)
    create(store, new_record(request=EMAIL))  # merged: merges = 1
    key = KEYS.record(record.id)
    redis_client.hset(key, "calling_until", redis_now(redis_client) + 60)
    redis_client.expire(key, 120)  # as if 880 s had passed

    assert store.save(as_status(record, ResendStatus.RETRYING), due_at=None)

    assert redis_client.hexists(key, "calling_until") is False
    assert 115 <= redis_client.ttl(key) <= 120
    stored = store.get(record.id)
    assert stored is not None
    assert stored.merges == 1


@pytest.mark.parametrize("final", [ResendStatus.SENT, ResendStatus.FAILED, ResendStatus.CANCELLED])
def test_save_rejects_a_final_status(store: RecordStore, final: ResendStatus) -> None:
    record = new_record()
    create(store, record)

    with pytest.raises(ValueError, match="finish"):
        store.save(as_status(record, final), due_at=None)

    stored = store.get(record.id)
    assert stored is not None
    assert stored.status is ResendStatus.QUEUED


def test_save_after_a_cancel_is_refused_and_writes_nothing(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    assert store.cancel(record.id, MARGIN) == "cancelled"
    stored_before = redis_client.hgetall(KEYS.record(record.id))

    deferred = record.model_copy(update={"status": ResendStatus.DEFERRED, "attempts": 7})
    assert store.save(deferred, due_at=T0.timestamp()) is False

    assert redis_client.hgetall(KEYS.record(record.id)) == stored_before
    assert due(redis_client, record.id) is None


@pytest.mark.parametrize("final", [ResendStatus.SENT, ResendStatus.FAILED])
def test_save_after_a_finish_is_refused(
    store: RecordStore, redis_client: redis.Redis, final: ResendStatus
) -> None:
    record = new_record()
    create(store, record)
    store.finish(as_status(record, final), MARGIN)

    assert store.save(as_status(record, ResendStatus.RETRYING), due_at=T0.timestamp()) is False

    stored = store.get(record.id)
    assert stored is not None
    assert stored.status is final
    assert due(redis_client, record.id) is None


def test_save_of_an_expired_record_is_refused_and_writes_nothing(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    redis_client.delete(KEYS.record(record.id))  # expired meanwhile
    redis_client.zrem(KEYS.due_index, record.id)

    assert store.save(as_status(record, ResendStatus.DEFERRED), due_at=T0.timestamp()) is False

    assert redis_client.exists(KEYS.record(record.id)) == 0
    assert due(redis_client, record.id) is None
