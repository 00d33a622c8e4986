"""Idempotency keys: a reused key stands for its first request, stored hashed, even once that
request has ended. (worker.state.records against a real Redis.)"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import redis

from tests.support.record_store import (
    EMAIL,
    IDEMPOTENCY_TTL,
    KEYS,
    MARGIN,
    ORDER,
    T0,
    as_status,
    create,
    fifo,
    new_record,
    pending,
)
from worker.state.records import Creation, RecordStore, ResendStatus


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
