"""Each order's FIFO of requests and the due index: the head is due one lease from now, the
others wait their turn and are promoted in turn. (worker.state.records against a real Redis.)"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import redis

from tests.support.record_store import (
    EMAIL,
    KEYS,
    LEASE,
    MARGIN,
    ORDER,
    OTHER_ORDER,
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
from worker.state.records import RecordStore, ResendStatus, TaskMessage


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
