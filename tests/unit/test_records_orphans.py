"""A request whose publish failed, and orphans at the head of their order: nothing is stranded.
(worker.state.records against a real Redis.)"""

from __future__ import annotations

import redis

from tests.support.record_store import (
    EMAIL,
    KEYS,
    MARGIN,
    ORDER,
    as_status,
    create,
    due,
    fifo,
    new_record,
    pending,
)
from tests.support.redis_db import redis_now
from worker.state.records import Creation, RecordStore, ResendStatus


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
    # The id -> order index is no longer written; one an earlier version wrote is cleaned up.
    assert redis_client.hget(KEYS.unfinished_orders, record.id) is None
    redis_client.hset(KEYS.unfinished_orders, record.id, ORDER)
    assert redis_client.hget(KEYS.dispatched, record.id) is not None

    assert store.finish(as_status(record, ResendStatus.SENT), MARGIN)

    assert redis_client.hget(KEYS.unfinished_orders, record.id) is None
    assert redis_client.hget(KEYS.dispatched, record.id) is None
