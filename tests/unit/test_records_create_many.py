"""Many requests stored at once: `create_many`, the create script for each in one
non-transactional pipeline, doing exactly what creating them one by one does.
(worker.state.records against a real Redis.)"""

from __future__ import annotations

import math
from typing import Any

import redis

from tests.support.record_store import (
    EMAIL,
    IDEMPOTENCY_TTL,
    KEYS,
    LEASE,
    MESSAGE,
    OTHER_ORDER,
    TTL,
    new_record,
)
from worker.state.keys import RedisKeys
from worker.state.records import Creation, RecordStore, TaskMessage


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
