"""Coalescing: an identical pending request of an order is merged into the first one, and only
while it is pending. (worker.state.records against a real Redis.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from tests.support.record_store import (
    EMAIL,
    IDEMPOTENCY_TTL,
    KEYS,
    MARGIN,
    ORDER,
    OTHER_ORDER,
    T0,
    as_status,
    create,
    due,
    fifo,
    new_record,
    pending,
)
from worker.state.records import Creation, RecordStore, ResendStatus


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
