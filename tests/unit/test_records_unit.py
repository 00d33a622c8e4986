"""Unit tests for worker.state.records against a real Redis: records, idempotency, coalescing, each
order's FIFO of requests and the due index, finishing and cancelling."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from worker.state.keys import RedisKeys
from worker.state.records import (
    AttemptEntry,
    Creation,
    RecordStore,
    ResendRecord,
    ResendStatus,
    TaskMessage,
)

KEYS = RedisKeys("test")
ORDER = "RA180426-1401-64"
OTHER_ORDER = "RA180426-1401-65"
TTL = 1000
IDEMPOTENCY_TTL = 300
LEASE = 30.0
MARGIN = 0.25
TOLERANCE = 0.05  # seconds, for scores computed from Redis's clock
T0 = datetime(2024, 3, 25, 22, 46, 39, tzinfo=UTC)
EMAIL = {"newEmail": "jane@example.com"}


@pytest.fixture
def store(redis_client: redis.Redis) -> RecordStore:
    return RecordStore(redis_client, KEYS, ttl_seconds=TTL)


def new_record(
    created_at: datetime = T0, order: str = ORDER, request: dict[str, str] | None = None
) -> ResendRecord:
    """A queued request; by default each one has fields of its own, so none coalesce."""
    return ResendRecord(
        id=uuid.uuid4().hex,
        reference_order_id=order,
        request=request if request is not None else {"newEmail": f"{uuid.uuid4().hex}@ex.com"},
        created_at=created_at,
        updated_at=created_at,
    )


# The task message the create script queues for a request first in its order's queue.
MESSAGE = TaskMessage("test-queue", '{"body": "a task message"}')


def create(
    store: RecordStore,
    record: ResendRecord,
    idempotency_key: str | None = None,
    message: TaskMessage | None = MESSAGE,
) -> Creation:
    return store.create(
        record, idempotency_key, IDEMPOTENCY_TTL, lease_seconds=LEASE, message=message
    )


def redis_now(client: redis.Redis) -> float:
    seconds, microseconds = client.time()
    return seconds + microseconds / 1_000_000


def due(client: redis.Redis, request_id: str) -> float | None:
    return client.zscore(KEYS.due_index, request_id)


def fifo(client: redis.Redis, order: str = ORDER) -> list[str]:
    return client.zrange(KEYS.order_fifo(order), 0, -1)


def pending(client: redis.Redis, order: str = ORDER) -> dict[str, str]:
    return client.hgetall(KEYS.order_pending(order))


def as_status(record: ResendRecord, status: ResendStatus) -> ResendRecord:
    return record.model_copy(update={"status": status})


# --- create and get ---------------------------------------------------------------------------


def test_a_created_record_reads_back_equal(store: RecordStore) -> None:
    record = new_record()

    assert create(store, record) == Creation(record.id, "created", True)

    assert store.get(record.id) == record


def test_an_unknown_id_reads_as_none(store: RecordStore) -> None:
    assert store.get("nope") is None


def test_a_record_is_a_hash_of_doc_status_and_merges(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()

    create(store, record)

    stored = redis_client.hgetall(KEYS.record(record.id))
    assert stored.keys() == {"doc", "status", "merges"}
    assert ResendRecord.model_validate_json(stored["doc"]) == record
    assert (stored["status"], stored["merges"]) == ("queued", "0")


def test_get_takes_status_and_merges_from_the_hash_fields(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)

    redis_client.hset(KEYS.record(record.id), mapping={"status": "deferred", "merges": 3})

    stored = store.get(record.id)
    assert stored is not None
    assert (stored.status, stored.merges) == (ResendStatus.DEFERRED, 3)


def test_create_sets_the_record_ttl_on_every_key_of_the_request(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()

    create(store, record)

    for key in (
        KEYS.record(record.id),
        KEYS.order_requests(ORDER),
        KEYS.order_fifo(ORDER),
        KEYS.order_pending(ORDER),
    ):
        assert TTL - 5 <= redis_client.ttl(key) <= TTL, key
    assert redis_client.ttl(KEYS.due_index) == -1  # live work only: no TTL


def test_create_without_a_key_writes_no_idempotency_key(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    create(store, new_record(), None)
    create(store, new_record(), "")

    assert redis_client.keys("test:idempotency:*") == []


# --- idempotency ------------------------------------------------------------------------------


def test_a_reused_idempotency_key_returns_the_first_id_and_stores_nothing_new(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record(T0 + timedelta(seconds=1))

    assert create(store, first, "bounce-123") == Creation(first.id, "created", True)
    assert create(store, second, "bounce-123") == Creation(first.id, "idempotent", False)

    assert store.get(second.id) is None
    assert store.ids_for_order(ORDER) == [first.id]
    assert fifo(redis_client) == [first.id]
    assert list(pending(redis_client).values()) == [first.id]
    assert redis_client.zrange(KEYS.due_index, 0, -1) == [first.id]
    idempotency_key = KEYS.idempotency("bounce-123")
    assert redis_client.get(idempotency_key) == first.id
    assert IDEMPOTENCY_TTL - 5 <= redis_client.ttl(idempotency_key) <= IDEMPOTENCY_TTL


def test_idempotency_keys_are_stored_hashed(store: RecordStore, redis_client: redis.Redis) -> None:
    caller_key = "caller key with spaces / and \u00fcnicode " * 20

    create(store, new_record(), caller_key)

    digest = hashlib.sha256(caller_key.encode()).hexdigest()
    assert redis_client.keys("test:idempotency:*") == [f"test:idempotency:{digest}"]


def test_different_idempotency_keys_create_different_records(store: RecordStore) -> None:
    first, second = new_record(), new_record()

    assert create(store, first, "k1").request_id == first.id
    assert create(store, second, "k2").request_id == second.id


def test_a_reused_key_stands_for_its_request_even_once_it_is_finished(
    store: RecordStore,
) -> None:
    first = new_record(request=EMAIL)
    create(store, first, "k")
    assert store.finish(as_status(first, ResendStatus.SENT), MARGIN)

    again = new_record(request=EMAIL)
    assert create(store, again, "k") == Creation(first.id, "idempotent", False)
    assert store.get(again.id) is None


# --- coalescing identical pending requests -------------------------------------------------


def test_an_identical_pending_request_is_merged_into_the_first(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first = new_record(request=EMAIL)
    create(store, first)
    due_before = due(redis_client, first.id)

    duplicate = new_record(T0 + timedelta(seconds=1), request=dict(EMAIL))
    assert create(store, duplicate) == Creation(first.id, "merged", False)

    assert store.get(duplicate.id) is None
    assert store.ids_for_order(ORDER) == [first.id]
    assert fifo(redis_client) == [first.id]
    assert pending(redis_client) == {first.fingerprint(): first.id}
    assert redis_client.zrange(KEYS.due_index, 0, -1) == [first.id]
    assert due(redis_client, first.id) == due_before
    assert redis_client.keys("test:idempotency:*") == []


def test_each_merge_is_counted_on_the_pending_request(store: RecordStore) -> None:
    first = new_record(request=EMAIL)
    create(store, first)

    for _ in range(3):
        assert create(store, new_record(request=EMAIL)).outcome == "merged"

    stored = store.get(first.id)
    assert stored is not None
    assert stored.merges == 3
    assert stored.status is ResendStatus.QUEUED


@pytest.mark.parametrize("status", [ResendStatus.DEFERRED, ResendStatus.RETRYING])
def test_a_deferred_or_retrying_request_is_still_pending_and_merges(
    store: RecordStore, status: ResendStatus
) -> None:
    first = new_record(request=EMAIL)
    create(store, first)
    assert store.save(as_status(first, status), due_at=None)

    assert create(store, new_record(request=EMAIL)) == Creation(first.id, "merged", False)


def test_requests_differing_in_order_or_fields_are_not_merged(store: RecordStore) -> None:
    first = new_record(request=EMAIL)
    other_fields = new_record(request={"newEmail": "john@example.com"})
    more_fields = new_record(request={**EMAIL, "newFirstName": "Jane"})
    other_order = new_record(order=OTHER_ORDER, request=EMAIL)

    outcomes = [
        create(store, record).outcome for record in (first, other_fields, more_fields, other_order)
    ]

    assert outcomes == ["created"] * 4
    assert first.fingerprint() not in {
        other_fields.fingerprint(),
        more_fields.fingerprint(),
        other_order.fingerprint(),
    }


def test_the_fingerprint_ignores_field_order_and_everything_but_order_and_fields() -> None:
    first = new_record(request={"a": "1", "b": "2"})
    second = new_record(T0 + timedelta(days=1), request={"b": "2", "a": "1"})

    assert first.id != second.id
    assert first.fingerprint() == second.fingerprint()


@pytest.mark.parametrize("ending", ["sent", "failed", "cancelled"])
def test_once_the_request_ended_an_identical_one_is_created_anew(
    store: RecordStore, redis_client: redis.Redis, ending: str
) -> None:
    first = new_record(request=EMAIL)
    create(store, first)
    if ending == "cancelled":
        assert store.cancel(first.id, MARGIN) == "cancelled"
    else:
        assert store.finish(as_status(first, ResendStatus(ending)), MARGIN)

    again = new_record(request=EMAIL)
    assert create(store, again) == Creation(again.id, "created", True)

    assert pending(redis_client) == {again.fingerprint(): again.id}
    stored_first = store.get(first.id)
    assert stored_first is not None
    assert stored_first.merges == 0


def test_a_new_idempotency_key_for_a_pending_duplicate_points_at_the_pending_request(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first = new_record(request=EMAIL)
    create(store, first, "k1")

    duplicate = new_record(request=EMAIL)
    assert create(store, duplicate, "k2") == Creation(first.id, "merged", False)

    key = KEYS.idempotency("k2")
    assert redis_client.get(key) == first.id
    assert IDEMPOTENCY_TTL - 5 <= redis_client.ttl(key) <= IDEMPOTENCY_TTL
    # The key, now seen, answers "idempotent" and merges nothing more.
    assert create(store, new_record(request=EMAIL), "k2") == Creation(first.id, "idempotent", False)
    stored = store.get(first.id)
    assert stored is not None
    assert stored.merges == 1


def test_the_idempotency_key_is_checked_before_merging(store: RecordStore) -> None:
    first = new_record(request=EMAIL)
    create(store, first, "k")

    # Same key, same fields: idempotent, not merged, not counted.
    assert create(store, new_record(request=EMAIL), "k").outcome == "idempotent"

    stored = store.get(first.id)
    assert stored is not None
    assert stored.merges == 0


def test_after_the_request_ended_a_new_key_with_the_same_fields_creates_anew(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first = new_record(request=EMAIL)
    create(store, first, "k1")
    store.finish(as_status(first, ResendStatus.SENT), MARGIN)

    again = new_record(request=EMAIL)
    assert create(store, again, "k2") == Creation(again.id, "created", True)
    assert redis_client.get(KEYS.idempotency("k2")) == again.id


# --- the order's FIFO and the due index -----------------------------------------------------


def test_the_first_request_of_an_order_is_the_head_and_the_others_wait_their_turn(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second, third = new_record(), new_record(), new_record()

    creations = [create(store, record) for record in (first, second, third)]

    assert [creation.is_head for creation in creations] == [True, False, False]
    assert [creation.outcome for creation in creations] == ["created"] * 3
    assert fifo(redis_client) == [first.id, second.id, third.id]
    assert pending(redis_client) == {r.fingerprint(): r.id for r in (first, second, third)}
    assert due(redis_client, second.id) == math.inf
    assert due(redis_client, third.id) == math.inf


def test_the_head_is_due_one_lease_from_now(store: RecordStore, redis_client: redis.Redis) -> None:
    record = new_record()

    before = redis_now(redis_client)
    create(store, record)
    after = redis_now(redis_client)

    score = due(redis_client, record.id)
    assert score is not None
    # Loose here (whole seconds); `..._to_the_microsecond` below holds the exact bound.
    assert before + LEASE - 1 <= score <= after + LEASE + TOLERANCE


def test_the_head_is_due_one_lease_from_now_to_the_microsecond(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()

    before = redis_now(redis_client)
    create(store, record)
    after = redis_now(redis_client)

    score = due(redis_client, record.id)
    assert score is not None
    assert before + LEASE <= score <= after + LEASE


def test_each_order_has_a_head_of_its_own(store: RecordStore, redis_client: redis.Redis) -> None:
    first_a, first_b, second_a = new_record(), new_record(order=OTHER_ORDER), new_record()

    assert create(store, first_a).is_head
    assert create(store, first_b).is_head
    assert not create(store, second_a).is_head

    assert fifo(redis_client) == [first_a.id, second_a.id]
    assert fifo(redis_client, OTHER_ORDER) == [first_b.id]
    assert due(redis_client, first_b.id) != math.inf
    assert due(redis_client, second_a.id) == math.inf


def test_the_fifo_follows_enqueue_order_not_creation_time(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    later, earlier = new_record(T0 + timedelta(hours=1)), new_record(T0)

    assert create(store, later).is_head
    assert not create(store, earlier).is_head

    assert fifo(redis_client) == [later.id, earlier.id]
    assert store.ids_for_order(ORDER) == [earlier.id, later.id]  # history: by creation time


def test_a_request_after_the_order_emptied_is_the_head_again(store: RecordStore) -> None:
    first = new_record()
    create(store, first)
    store.finish(as_status(first, ResendStatus.SENT), MARGIN)

    assert create(store, new_record()).is_head


def test_finishing_each_head_promotes_the_next_in_turn(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second, third = new_record(), new_record(), new_record()
    for record in (first, second, third):
        create(store, record)

    assert store.finish(as_status(first, ResendStatus.SENT), MARGIN)
    assert fifo(redis_client) == [second.id, third.id]
    assert due(redis_client, first.id) is None
    assert due(redis_client, second.id) != math.inf
    assert due(redis_client, third.id) == math.inf

    assert store.finish(as_status(second, ResendStatus.FAILED), MARGIN)
    assert fifo(redis_client) == [third.id]
    assert due(redis_client, third.id) != math.inf

    assert store.finish(as_status(third, ResendStatus.SENT), MARGIN)
    assert fifo(redis_client) == []
    assert pending(redis_client) == {}
    assert redis_client.zcard(KEYS.due_index) == 0
    assert set(store.ids_for_order(ORDER)) == {first.id, second.id, third.id}  # history kept


def test_the_next_request_is_released_when_the_orders_window_ends_plus_the_margin(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record()
    create(store, first)
    create(store, second)

    now = redis_now(redis_client)
    redis_client.set(KEYS.order_window(ORDER), "x", px=1500)
    store.finish(as_status(first, ResendStatus.SENT), MARGIN)

    assert due(redis_client, second.id) == pytest.approx(now + 1.5 + MARGIN, abs=TOLERANCE)


def test_without_a_window_the_next_request_is_released_now_plus_the_margin(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record()
    create(store, first)
    create(store, second)

    now = redis_now(redis_client)
    store.finish(as_status(first, ResendStatus.SENT), 0.0)

    assert due(redis_client, second.id) == pytest.approx(now, abs=TOLERANCE)


def test_a_window_without_expiry_counts_as_no_window(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record()
    create(store, first)
    create(store, second)
    redis_client.set(KEYS.order_window(ORDER), "x")

    now = redis_now(redis_client)
    store.finish(as_status(first, ResendStatus.SENT), MARGIN)

    assert due(redis_client, second.id) == pytest.approx(now + MARGIN, abs=TOLERANCE)


def test_a_next_request_missing_from_the_due_index_is_promoted(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record()
    create(store, first)
    create(store, second)
    redis_client.zrem(KEYS.due_index, second.id)

    now = redis_now(redis_client)
    store.finish(as_status(first, ResendStatus.SENT), MARGIN)

    assert due(redis_client, second.id) == pytest.approx(now + MARGIN, abs=TOLERANCE)


def test_a_next_request_already_scheduled_keeps_its_score(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record(), new_record()
    create(store, first)
    create(store, second)
    scheduled = redis_now(redis_client) + 1234.5
    assert store.save(as_status(second, ResendStatus.DEFERRED), scheduled)
    redis_client.set(KEYS.order_window(ORDER), "x", px=1500)

    store.finish(as_status(first, ResendStatus.SENT), MARGIN)

    assert due(redis_client, second.id) == pytest.approx(scheduled, abs=0.001)


# --- save ---------------------------------------------------------------------------------------


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


# --- finish -------------------------------------------------------------------------------------


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

    assert pending(redis_client) == {record.fingerprint(): "someone-else"}


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


# --- cancel -------------------------------------------------------------------------------------


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


def test_cancel_is_refused_while_a_call_is_in_flight_and_allowed_once_it_is_past(
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
    assert redis_client.hget(key, "doc") == before["doc"]
    assert due(redis_client, head.id) == head_due
    assert due(redis_client, behind.id) == math.inf
    assert fifo(redis_client) == [head.id, behind.id]

    redis_client.hset(key, "calling_until", redis_now(redis_client) - 1)

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


# --- a publish that failed, and orphans ----------------------------------------------------------


def test_a_request_whose_publish_failed_is_due_now_and_keeps_what_others_were_given(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """Given a request an identical submission was merged into and an idempotent redelivery
    was handed, When its task message could not be published, Then nothing is deleted: it is
    made due now for the scheduler, and every id handed out stays valid."""
    head = new_record(request=EMAIL)
    creation = create(store, head, "bounce-123")
    assert creation.is_head and creation.dispatch > 0
    assert create(store, new_record(request=EMAIL)) == Creation(head.id, "merged", False)
    assert create(store, new_record(), "bounce-123") == Creation(head.id, "idempotent", False)

    store.release_unpublished(head.id, creation.dispatch)
    now = redis_now(redis_client)

    assert store.get(head.id) is not None
    assert redis_client.get(KEYS.idempotency("bounce-123")) == head.id
    assert fifo(redis_client) == [head.id]
    assert pending(redis_client) == {head.fingerprint(): head.id}
    score = due(redis_client, head.id)
    assert score is not None and now - 1 <= score <= now + 1
    assert redis_client.hget(KEYS.dispatched, head.id) is None


def test_an_orphan_at_the_head_of_its_order_is_dropped_and_the_next_request_goes(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """Given the head of an order's queue whose record has gone (expired or deleted), When
    its task runs into the missing record, Then it leaves every index and the request behind
    it is due now (on the old code the order was blocked forever and the orphan re-released
    every lease)."""
    head, behind = new_record(), new_record(request=EMAIL)
    create(store, head)
    create(store, behind)
    redis_client.delete(KEYS.record(head.id))

    assert store.drop_orphan(head.id, MARGIN) is True
    now = redis_now(redis_client)

    assert fifo(redis_client) == [behind.id]
    assert due(redis_client, head.id) is None
    assert head.fingerprint() not in pending(redis_client)
    score = due(redis_client, behind.id)
    assert score is not None and now - 1 <= score <= now + 1
    assert redis_client.hget(KEYS.unfinished_orders, head.id) is None
    assert store.drop_orphan(behind.id, MARGIN) is False, "a request with a record is no orphan"


def test_finishing_forgets_the_unfinished_indexes(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    assert redis_client.hget(KEYS.unfinished_orders, record.id) == ORDER
    assert redis_client.hget(KEYS.dispatched, record.id) is not None

    assert store.finish(as_status(record, ResendStatus.SENT), MARGIN)

    assert redis_client.hget(KEYS.unfinished_orders, record.id) is None
    assert redis_client.hget(KEYS.dispatched, record.id) is None


# --- history and statuses -----------------------------------------------------------------------


def test_ids_for_order_are_oldest_first_and_per_order(store: RecordStore) -> None:
    middle = new_record(T0 + timedelta(seconds=1))
    newest = new_record(T0 + timedelta(minutes=5))
    oldest = new_record(T0 - timedelta(days=1))
    other_order = new_record(T0, order=OTHER_ORDER)
    for record in (middle, newest, oldest, other_order):
        create(store, record)

    assert store.ids_for_order(ORDER) == [oldest.id, middle.id, newest.id]
    assert store.ids_for_order(OTHER_ORDER) == [other_order.id]
    assert store.ids_for_order("RA000000-0-0") == []


def test_ids_for_order_orders_by_sub_second_creation_time(store: RecordStore) -> None:
    later = new_record(T0 + timedelta(milliseconds=2))
    earlier = new_record(T0 + timedelta(milliseconds=1))
    create(store, later)
    create(store, earlier)

    assert store.ids_for_order(ORDER) == [earlier.id, later.id]


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (ResendStatus.QUEUED, False),
        (ResendStatus.DEFERRED, False),
        (ResendStatus.RETRYING, False),
        (ResendStatus.SENT, True),
        (ResendStatus.FAILED, True),
        (ResendStatus.CANCELLED, True),
    ],
)
def test_only_sent_failed_and_cancelled_are_final(status: ResendStatus, final: bool) -> None:
    assert status.is_final is final


def test_a_head_created_with_its_task_message_has_it_queued_in_the_same_step(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """The record and its task message land together (one script): a 202 means both."""
    head, behind = new_record(), new_record(request=EMAIL)
    message = TaskMessage("queue-list", '{"body": "..."}')

    assert create(store, head, message=message).is_head
    assert not create(store, behind, message=message).is_head

    assert redis_client.lrange("queue-list", 0, -1) == ['{"body": "..."}'], "the head's only"
    assert redis_client.hget(KEYS.dispatched, head.id) is not None
    assert due(redis_client, behind.id) == math.inf


def test_a_head_created_without_a_message_is_due_at_once_for_the_scheduler(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    head = new_record()
    assert create(store, head, message=None).is_head
    now = redis_now(redis_client)
    score = due(redis_client, head.id)
    assert score is not None and now - 1 <= score <= now + 1
    assert redis_client.hget(KEYS.dispatched, head.id) is None


# --- many at once (create_many: one pipeline of create scripts) ------------------------------


def stored_state(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under `prefix` (the prefix cut off) and its value; due-index scores that
    are times (a lease from now) as "time", since two runs cannot share a clock reading."""
    state: dict[str, Any] = {}
    for key in client.scan_iter(f"{prefix}*"):
        name, kind = key.removeprefix(prefix), client.type(key)
        if kind == "string":
            state[name] = client.get(key)
        elif kind == "hash":
            state[name] = client.hgetall(key)
        elif kind == "list":
            state[name] = client.lrange(key, 0, -1)
        else:
            assert kind == "zset", key
            scores = client.zrange(key, 0, -1, withscores=True)
            timed = name.endswith(":due")
            state[name] = [(m, "time" if timed and math.isfinite(s) else s) for m, s in scores]
    return state


def test_create_many_does_what_creating_one_by_one_does(redis_client: redis.Redis) -> None:
    """Duplicates inside one pipeline (a repeated key, identical fields for one order, a new
    key for a pending request) and requests waiting behind another of their order come out
    as they do when each request is created in turn: same replies, same keys and values."""
    other = {"newEmail": "john@example.com"}
    requests = [  # (record, idempotency key, has a message)
        (new_record(request=EMAIL), "k1", True),  # created, head
        (new_record(request=EMAIL), None, True),  # merged into the first
        (new_record(request=other), "k1", True),  # idempotent: k1 stands for the first
        (new_record(request=other), "k2", True),  # created, behind the first
        (new_record(order=OTHER_ORDER, request=EMAIL), None, False),  # created, head, no message
        (new_record(request=other), "k3", True),  # merged into the fourth, k3 points at it
        (new_record(request=other), "k2", True),  # idempotent again
    ]

    def arguments(prefix: str) -> list[Any]:
        message = TaskMessage(f"{prefix}queue", '{"body": "a task message"}')
        return [
            (record, key, IDEMPOTENCY_TTL, LEASE, message if has_message else None)
            for record, key, has_message in requests
        ]

    batched = RecordStore(redis_client, RedisKeys("batched"), ttl_seconds=TTL)
    one_by_one = RecordStore(redis_client, RedisKeys("single"), ttl_seconds=TTL)
    together = batched.create_many(arguments("batched"))
    in_turn = [one_by_one.create(*item) for item in arguments("single")]

    first, _, _, fourth, fifth, _, _ = (record.id for record, _, _ in requests)
    assert (
        together
        == in_turn
        == [
            Creation(first, "created", True),
            Creation(first, "merged", False),
            Creation(first, "idempotent", False),
            Creation(fourth, "created", False),
            Creation(fifth, "created", True),
            Creation(fourth, "merged", False),
            Creation(fourth, "idempotent", False),
        ]
    )
    assert [creation.dispatch for creation in together] == [c.dispatch for c in in_turn]
    assert stored_state(redis_client, "batched") == stored_state(redis_client, "single")
    assert redis_client.lrange("batchedqueue", 0, -1) == ['{"body": "a task message"}']


def test_a_request_redis_refuses_in_create_many_leaves_the_others_stored(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """One create script fails (its order's pending hash is a string: WRONGTYPE, before it
    writes anything); the requests before and after it in the pipeline are stored."""
    broken_order = "RA180426-1401-99"
    redis_client.set(KEYS.order_pending(broken_order), "not a hash")
    before, broken, after = (
        new_record(),
        new_record(order=broken_order),
        new_record(order=OTHER_ORDER),
    )

    replies = store.create_many(
        [(record, None, IDEMPOTENCY_TTL, LEASE, MESSAGE) for record in (before, broken, after)]
    )

    assert replies[0] == Creation(before.id, "created", True)
    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
    assert replies[2] == Creation(after.id, "created", True)
    assert store.get(before.id) == before and store.get(after.id) == after
    assert store.get(broken.id) is None


def test_create_many_of_nothing_sends_nothing(store: RecordStore) -> None:
    assert store.create_many([]) == []
