"""worker.state.records' RecordStore as its unit tests drive it: one store on the tests'
database, requests made to order, and the indexes read straight from Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import redis

from worker.state.keys import RedisKeys
from worker.state.records import (
    Creation,
    RecordStore,
    ResendRecord,
    ResendStatus,
    TaskMessage,
    new_request_id,
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
# The task message the create script queues for a request first in its order's queue.
MESSAGE = TaskMessage("test-queue", '{"body": "a task message"}')


def record_store(client: redis.Redis) -> RecordStore:
    return RecordStore(client, KEYS, ttl_seconds=TTL)


def new_record(
    created_at: datetime = T0, order: str = ORDER, request: dict[str, str] | None = None
) -> ResendRecord:
    """A queued request; by default each one has fields of its own, so none coalesce."""
    return ResendRecord(
        id=new_request_id(order),
        reference_order_id=order,
        request=request if request is not None else {"newEmail": f"{uuid.uuid4().hex}@ex.com"},
        created_at=created_at,
        updated_at=created_at,
    )


def create(
    store: RecordStore,
    record: ResendRecord,
    idempotency_key: str | None = None,
    message: TaskMessage | None = MESSAGE,
) -> Creation:
    return store.create(
        record, idempotency_key, IDEMPOTENCY_TTL, lease_seconds=LEASE, message=message
    )


def due(client: redis.Redis, request_id: str) -> float | None:
    """The request's score in the due index (None: not in it; inf: parked for its turn)."""
    return client.zscore(KEYS.due_index, request_id)


def fifo(client: redis.Redis, order: str = ORDER) -> list[str]:
    """The order's queue of unfinished requests, head first (the waiting members of the order's
    sorted set: lib/order_queue.lua)."""
    return client.zrangebyscore(KEYS.order_fifo(order), "(0", "+inf")


def finished_in_history(client: redis.Redis, order: str = ORDER) -> list[str]:
    """The order's finished requests, oldest first (kept for listings)."""
    return client.zrevrangebyscore(KEYS.order_fifo(order), "(0", "-inf")


def pending(client: redis.Redis, order: str = ORDER) -> dict[str, str]:
    """The order's waiting requests by fingerprint (what coalescing compares: each record
    keeps the first 16 hex digits of its own, `fp`), read back from their records."""
    found = {}
    for request_id in fifo(client, order):
        record = record_store(client).get(request_id)
        if record is not None:
            assert client.hget(KEYS.record(request_id), "fp") == record.fingerprint()[:16]
            found[record.fingerprint()] = request_id
    return found


def as_status(record: ResendRecord, status: ResendStatus) -> ResendRecord:
    return record.model_copy(update={"status": status})
