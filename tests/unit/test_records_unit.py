"""Unit tests for worker.records against a real Redis: records, idempotency and order history."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from worker.keys import RedisKeys
from worker.records import AttemptEntry, RecordStore, ResendRecord, ResendStatus

KEYS = RedisKeys("test")
ORDER = "RA180426-1401-64"
TTL = 1000
IDEMPOTENCY_TTL = 300
T0 = datetime(2024, 3, 25, 22, 46, 39, tzinfo=UTC)


@pytest.fixture
def store(redis_client: redis.Redis) -> RecordStore:
    return RecordStore(redis_client, KEYS, ttl_seconds=TTL)


def new_record(created_at: datetime = T0, order: str = ORDER) -> ResendRecord:
    return ResendRecord(
        id=uuid.uuid4().hex,
        reference_order_id=order,
        request={"newEmail": "jane@example.com"},
        created_at=created_at,
        updated_at=created_at,
    )


def test_a_created_record_reads_back_equal(store: RecordStore) -> None:
    record = new_record()

    assert store.create(record, None, IDEMPOTENCY_TTL) == record.id

    assert store.get(record.id) == record


def test_an_unknown_id_reads_as_none(store: RecordStore) -> None:
    assert store.get("nope") is None


def test_create_sets_the_record_ttl(store: RecordStore, redis_client: redis.Redis) -> None:
    record = new_record()

    store.create(record, None, IDEMPOTENCY_TTL)

    assert TTL - 5 <= redis_client.ttl(KEYS.record(record.id)) <= TTL
    assert TTL - 5 <= redis_client.ttl(KEYS.order_requests(ORDER)) <= TTL


def test_create_without_a_key_writes_no_idempotency_key(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    store.create(new_record(), None, IDEMPOTENCY_TTL)
    store.create(new_record(), "", IDEMPOTENCY_TTL)

    assert redis_client.keys("test:idempotency:*") == []


def test_save_keeps_the_ttl_the_record_was_created_with(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    store.create(record, None, IDEMPOTENCY_TTL)
    redis_client.expire(KEYS.record(record.id), 120)  # as if 880 s had passed

    updated = record.model_copy(
        update={
            "status": ResendStatus.SENT,
            "attempts": 1,
            "sent_at": T0 + timedelta(seconds=1),
            "attempt_log": [AttemptEntry(at=T0, outcome="sent", status=201)],
        }
    )
    store.save(updated)

    assert 115 <= redis_client.ttl(KEYS.record(record.id)) <= 120
    assert store.get(record.id) == updated


def test_save_of_an_expired_record_stores_it_for_a_full_ttl(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    store.create(record, None, IDEMPOTENCY_TTL)
    redis_client.delete(KEYS.record(record.id))  # expired meanwhile

    store.save(record.model_copy(update={"status": ResendStatus.FAILED}))

    assert TTL - 5 <= redis_client.ttl(KEYS.record(record.id)) <= TTL
    stored = store.get(record.id)
    assert stored is not None
    assert stored.status is ResendStatus.FAILED


def test_a_reused_idempotency_key_returns_the_first_id_and_stores_nothing_new(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record(T0 + timedelta(seconds=1))

    assert store.create(first, "bounce-123", IDEMPOTENCY_TTL) == first.id
    assert store.create(second, "bounce-123", IDEMPOTENCY_TTL) == first.id

    assert store.get(second.id) is None
    assert store.ids_for_order(ORDER) == [first.id]
    idempotency_key = KEYS.idempotency("bounce-123")
    assert redis_client.get(idempotency_key) == first.id
    assert IDEMPOTENCY_TTL - 5 <= redis_client.ttl(idempotency_key) <= IDEMPOTENCY_TTL


def test_idempotency_keys_are_stored_hashed(store: RecordStore, redis_client: redis.Redis) -> None:
    caller_key = "caller key with spaces / and \u00fcnicode " * 20

    store.create(new_record(), caller_key, IDEMPOTENCY_TTL)

    digest = hashlib.sha256(caller_key.encode()).hexdigest()
    assert redis_client.keys("test:idempotency:*") == [f"test:idempotency:{digest}"]


def test_different_idempotency_keys_create_different_records(store: RecordStore) -> None:
    first, second = new_record(), new_record()

    assert store.create(first, "k1", IDEMPOTENCY_TTL) == first.id
    assert store.create(second, "k2", IDEMPOTENCY_TTL) == second.id


def test_undo_create_forgets_the_record_its_history_entry_and_key(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """Given a record whose task could not be queued, When undone, Then a retry can create it."""
    kept, undone = new_record(), new_record(T0 + timedelta(seconds=1))
    store.create(kept, None, IDEMPOTENCY_TTL)
    store.create(undone, "bounce-123", IDEMPOTENCY_TTL)

    store.undo_create(undone, "bounce-123")

    assert store.get(undone.id) is None
    assert store.ids_for_order(ORDER) == [kept.id]
    assert redis_client.exists(KEYS.idempotency("bounce-123")) == 0
    retry = new_record(T0 + timedelta(seconds=2))
    assert store.create(retry, "bounce-123", IDEMPOTENCY_TTL) == retry.id


def test_undo_create_without_a_key(store: RecordStore) -> None:
    record = new_record()
    store.create(record, None, IDEMPOTENCY_TTL)

    store.undo_create(record, None)

    assert store.get(record.id) is None
    assert store.ids_for_order(ORDER) == []


def test_ids_for_order_are_oldest_first_and_per_order(store: RecordStore) -> None:
    middle = new_record(T0 + timedelta(seconds=1))
    newest = new_record(T0 + timedelta(minutes=5))
    oldest = new_record(T0 - timedelta(days=1))
    other_order = new_record(T0, order="RA180426-1401-65")
    for record in (middle, newest, oldest, other_order):
        store.create(record, None, IDEMPOTENCY_TTL)

    assert store.ids_for_order(ORDER) == [oldest.id, middle.id, newest.id]
    assert store.ids_for_order("RA180426-1401-65") == [other_order.id]
    assert store.ids_for_order("RA000000-0-0") == []


def test_ids_for_order_orders_by_sub_second_creation_time(store: RecordStore) -> None:
    later = new_record(T0 + timedelta(milliseconds=2))
    earlier = new_record(T0 + timedelta(milliseconds=1))
    store.create(later, None, IDEMPOTENCY_TTL)
    store.create(earlier, None, IDEMPOTENCY_TTL)

    assert store.ids_for_order(ORDER) == [earlier.id, later.id]


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (ResendStatus.QUEUED, False),
        (ResendStatus.DEFERRED, False),
        (ResendStatus.RETRYING, False),
        (ResendStatus.SENT, True),
        (ResendStatus.FAILED, True),
    ],
)
def test_only_sent_and_failed_are_final(status: ResendStatus, final: bool) -> None:
    assert status.is_final is final


# --- the due index (lost-task sweeping) -----------------------------------------------------


def test_a_new_record_is_due_at_its_creation_time(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()

    store.create(record, None, IDEMPOTENCY_TTL)

    assert redis_client.zscore(KEYS.due_index, record.id) == pytest.approx(T0.timestamp())


def test_a_reused_idempotency_key_adds_nothing_to_the_due_index(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record()
    store.create(first, "k", IDEMPOTENCY_TTL)
    store.create(second, "k", IDEMPOTENCY_TTL)

    assert redis_client.zrange(KEYS.due_index, 0, -1) == [first.id]


def test_saving_an_unfinished_record_moves_it_to_its_next_attempt(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    store.create(record, None, IDEMPOTENCY_TTL)
    next_attempt = T0 + timedelta(seconds=30)

    store.save(
        record.model_copy(update={"status": ResendStatus.DEFERRED, "next_attempt_at": next_attempt})
    )

    assert redis_client.zscore(KEYS.due_index, record.id) == pytest.approx(next_attempt.timestamp())


def test_saving_without_a_next_attempt_uses_the_update_time(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    store.create(record, None, IDEMPOTENCY_TTL)
    updated_at = T0 + timedelta(seconds=5)

    store.save(
        record.model_copy(update={"status": ResendStatus.RETRYING, "updated_at": updated_at})
    )

    assert redis_client.zscore(KEYS.due_index, record.id) == pytest.approx(updated_at.timestamp())


@pytest.mark.parametrize("final", [ResendStatus.SENT, ResendStatus.FAILED])
def test_saving_a_final_record_takes_it_out_of_the_due_index(
    store: RecordStore, redis_client: redis.Redis, final: ResendStatus
) -> None:
    record = new_record()
    store.create(record, None, IDEMPOTENCY_TTL)

    store.save(record.model_copy(update={"status": final}))

    assert redis_client.zscore(KEYS.due_index, record.id) is None


def test_undo_create_and_forget_due_take_a_request_out_of_the_due_index(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    undone, forgotten, kept = new_record(), new_record(), new_record()
    for record in (undone, forgotten, kept):
        store.create(record, None, IDEMPOTENCY_TTL)

    store.undo_create(undone, None)
    store.forget_due(forgotten.id)

    assert redis_client.zrange(KEYS.due_index, 0, -1) == [kept.id]
