"""Resend records: the source of truth for a request's state, kept in Redis with a TTL."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from worker.keys import RedisKeys


class ResendStatus(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (ResendStatus.SENT, ResendStatus.FAILED)


class AttemptEntry(BaseModel):
    """One call to Tango made for this request."""

    at: datetime
    outcome: str
    status: int | None = None
    i18n_key: str | None = None
    tango_request_id: str | None = None


class ResendRecord(BaseModel):
    """A resend request and everything that has happened to it."""

    id: str
    reference_order_id: str
    request: dict[str, str] = Field(default_factory=dict)
    status: ResendStatus = ResendStatus.QUEUED
    attempts: int = 0
    transient_failures: int = 0
    cooldown_deferrals: int = 0
    lock_deferrals: int = 0
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    response: dict[str, Any] | None = None
    tango_request_ids: list[str] = Field(default_factory=list)
    attempt_log: list[AttemptEntry] = Field(default_factory=list)
    idempotency_key_hash: str | None = None


# Stores the record and the idempotency claim together, or returns the id that claimed the key.
_CREATE = """
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return existing end
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return ARGV[1]
"""


class RecordStore:
    """Create, read and update records."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, ttl_seconds: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_seconds = ttl_seconds
        self._create = client.register_script(_CREATE)

    def create(
        self, record: ResendRecord, idempotency_key: str | None, idempotency_ttl_seconds: int
    ) -> str:
        """Store a new record; returns its id, or the earlier request's id for a reused key."""
        idempotency_redis_key = self._keys.idempotency(idempotency_key) if idempotency_key else ""
        winner = self._create(
            keys=[
                self._keys.record(record.id),
                idempotency_redis_key,
                self._keys.order_requests(record.reference_order_id),
                self._keys.due_index,
            ],
            args=[
                record.id,
                record.model_dump_json(),
                self._ttl_seconds,
                idempotency_ttl_seconds,
                record.created_at.timestamp(),
            ],
        )
        return str(winner)

    def undo_create(self, record: ResendRecord, idempotency_key: str | None) -> None:
        """Forget a record whose task could not be queued, so a retry by the caller works."""
        with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.record(record.id))
            pipe.zrem(self._keys.order_requests(record.reference_order_id), record.id)
            pipe.zrem(self._keys.due_index, record.id)
            if idempotency_key:
                pipe.delete(self._keys.idempotency(idempotency_key))
            pipe.execute()

    def get(self, request_id: str) -> ResendRecord | None:
        raw = self._client.get(self._keys.record(request_id))
        return None if raw is None else ResendRecord.model_validate_json(raw)

    def save(self, record: ResendRecord) -> None:
        """Overwrite a record, keeping the TTL it was created with, and its place in the
        due index (removed once final)."""
        payload = record.model_dump_json()
        with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.record(record.id), payload, keepttl=True, xx=True)
            if record.status.is_final:
                pipe.zrem(self._keys.due_index, record.id)
            else:
                due = record.next_attempt_at or record.updated_at
                pipe.zadd(self._keys.due_index, {record.id: due.timestamp()})
            stored = pipe.execute()[0]
        if not stored:  # expired meanwhile: keep the outcome visible for a full TTL again
            self._client.set(self._keys.record(record.id), payload, ex=self._ttl_seconds)

    def forget_due(self, request_id: str) -> None:
        """Take a request out of the due index (its record is gone or final)."""
        self._client.zrem(self._keys.due_index, request_id)

    def ids_for_order(self, reference_order_id: str) -> list[str]:
        """Request ids for one order, oldest first."""
        ids = self._client.zrange(self._keys.order_requests(reference_order_id), 0, -1)
        return [str(item) for item in ids]
