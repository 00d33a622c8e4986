"""Resend records: the source of truth for a request's state, kept in Redis with a TTL.

A record is a Redis hash: `doc` (the JSON of `ResendRecord`), `status` (authoritative: the
scripts that cancel or finish a request change it atomically with the order's queue) and
`merges` (identical requests coalesced into this one). State changes that touch several keys
(the order's FIFO, its pending fingerprints, the due index) are single Lua scripts in
`worker/state/lua/*.lua`, so two processes never interleave halfway.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from worker.state import scripts
from worker.state.clock import Clock, RedisClock
from worker.state.keys import RedisKeys
from worker.state.metrics import SUBMISSION_COUNTERS, outcome_fields
from worker.state.scripts import ScriptValue
from worker.state.window import window_milliseconds


@dataclass(frozen=True)
class TaskMessage:
    """One task message as kombu's Redis transport would LPUSH it (built by
    `worker/queueing/task_messages.py`), pushed by the script that creates the request."""

    list_key: str
    payload: str


class ResendStatus(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (ResendStatus.SENT, ResendStatus.FAILED, ResendStatus.CANCELLED)


FINAL_STATUSES = [status.value for status in ResendStatus if status.is_final]


class AttemptEntry(BaseModel):
    """One call to Tango made for this request."""

    at: datetime
    outcome: str
    status: int | None = None
    i18n_key: str | None = None
    tango_request_id: str | None = None
    # A probe: the prompt second call that asks Tango whether an ambiguous call acted.
    probe: bool = False


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
    merges: int = 0
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    response: dict[str, Any] | None = None
    tango_request_ids: list[str] = Field(default_factory=list)
    attempt_log: list[AttemptEntry] = Field(default_factory=list)
    retry_of: str | None = None
    # How `sent` was known: None for Tango's 201, "cooldown" when Tango's cooldown answer to a
    # probe proved that an earlier call whose answer we never had had resent.
    confirmed_by: str | None = None
    # The start (Redis's clock, epoch seconds) of the earliest call whose outcome is unknown
    # (a timeout, a reset, a 502/504, a worker killed mid-call) and not yet settled by a probe.
    unresolved_call_started_at: float | None = None

    def fingerprint(self) -> str:
        """Identifies "the same request": the order and exactly the same fields."""
        return request_fingerprint(self.reference_order_id, self.request)


def request_fingerprint(reference_order_id: str, fields: dict[str, str]) -> str:
    canonical = json.dumps([reference_order_id, fields], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


CreateArguments = tuple[ResendRecord, str | None, int, float, TaskMessage | None]
"""`RecordStore.create`'s arguments: record, idempotency key, its TTL in seconds, lease in
seconds, task message."""


@dataclass(frozen=True)
class Creation:
    """What `RecordStore.create` did."""

    request_id: str
    outcome: str  # "created", "idempotent" (key seen before) or "merged" (coalesced)
    is_head: bool  # the first waiting request of its order: its task may run now
    # The number its task message carries (0 when none is to be sent); not part of equality,
    # since it only numbers the message.
    dispatch: int = field(default=0, compare=False)


def creation_from_reply(reply: Any) -> Creation:
    """What the create script's reply says it did."""
    request_id, outcome, head, dispatch = reply
    return Creation(str(request_id), str(outcome), bool(int(head)), int(dispatch))


@dataclass(frozen=True)
class Begun:
    """What `RecordStore.begin` found when a worker took a request's task message.

    `verdict` is "ok" (this run holds the request: `token` fences its writes, `record` is the
    request), "unknown" (no record), "final" (nothing left to do) or "busy" (a call for it is
    in flight; the request is released again when that call's hold ends).
    """

    verdict: str
    token: str = ""
    record: ResendRecord | None = None
    # "ok" only: the start (Redis's clock, epoch seconds) of a call that passed the gate and
    # whose outcome nobody stored (its worker died mid-call), else None.
    interrupted_call_started_at: float | None = None


# The next request of an order is released this long after the window ends, so it never
# meets the window's last millisecond.
PROMOTE_MARGIN_SECONDS = 0.002

WindowAction = float | str | None
"""What to do with the order's window when storing a record after a call: None keeps it,
RELEASE_WINDOW drops it (no resend happened), a number of seconds re-anchors it."""
KEEP_WINDOW: WindowAction = None
RELEASE_WINDOW = "release"  # due-index score of a request queued behind another of its order


class RecordStore:
    """Create, read, update, finish and cancel records."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        ttl_seconds: int,
        callbacks: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._clock = clock or RedisClock(client)
        self._keys = keys
        self._ttl_seconds = ttl_seconds
        self._outbox = keys.callbacks_due if callbacks else ""
        self._create = scripts.load("create").bind(client)
        self._save = scripts.load("save").bind(client)
        self._finish = scripts.load("finish").bind(client)
        self._begin = scripts.load("begin").bind(client)
        self._release_unpublished = scripts.load("release_unpublished").bind(client)
        self._drop_orphan = scripts.load("drop_orphan").bind(client)

    def create(
        self,
        record: ResendRecord,
        idempotency_key: str | None,
        idempotency_ttl_seconds: int,
        lease_seconds: float,
        message: TaskMessage | None = None,
    ) -> Creation:
        """Store a new request, unless its idempotency key or an identical pending request
        already stands for it; then that request's id is returned and nothing is stored.

        A new request first in its order's queue gets `message` (its task message) pushed to
        the broker in the same step; without one it is due at once, for the scheduler to
        publish."""
        keys, args = self.create_arguments(
            record, idempotency_key, idempotency_ttl_seconds, lease_seconds, message
        )
        return creation_from_reply(self._create(keys=keys, args=args))

    def create_many(self, requests: Sequence[CreateArguments]) -> list[Creation | redis.RedisError]:
        """`create` for many requests in one round trip: a pipeline (not a transaction) of
        create scripts, run in the order given, each atomic on its own, so a request sees the
        ones before it exactly as if they had been created one by one (a repeated idempotency
        key, an identical request of the same order). One reply per request, in order: its
        `Creation`, or the error Redis answered for that request alone (the others ran).

        Raises:
            redis.RedisError: the pipeline failed as a whole (Redis unreachable, the
                connection lost): which requests ran, if any, is unknown.
        """
        if not requests:
            return []
        with self._client.pipeline(transaction=False) as pipe:
            for arguments in requests:
                keys, args = self.create_arguments(*arguments)
                self._create.queue(pipe, keys, args)
            replies = pipe.execute(raise_on_error=False)
        return [
            reply if isinstance(reply, redis.RedisError) else creation_from_reply(reply)
            for reply in replies
        ]

    def create_arguments(
        self,
        record: ResendRecord,
        idempotency_key: str | None,
        idempotency_ttl_seconds: int,
        lease_seconds: float,
        message: TaskMessage | None = None,
    ) -> tuple[dict[str, str], dict[str, ScriptValue]]:
        """KEYS and ARGV of the create script for `create` (also run by the webhook
        receiver's asyncio client: see `worker.resend.producer.submit_resend_async`)."""
        keys = self._keys
        order = record.reference_order_id
        script_keys = {
            "record_key": keys.record(record.id),
            "idempotency_key": keys.idempotency(idempotency_key) if idempotency_key else "",
            "order_requests_key": keys.order_requests(order),
            "due_key": keys.due_index,
            "fifo_key": keys.order_fifo(order),
            "pending_key": keys.order_pending(order),
            "sequence_key": keys.sequence,
            "by_time_key": keys.requests_by_time,
            "dispatched_key": keys.dispatched,
            "dispatch_sequence_key": keys.dispatch_sequence,
            "unfinished_key": keys.unfinished_orders,
            "metrics_key": keys.metrics,
            "queue_key": message.list_key if message else "",
        }
        counter_created, counter_merged, counter_idempotent = SUBMISSION_COUNTERS
        args: dict[str, ScriptValue] = {
            "id": record.id,
            "doc": record.model_dump_json(),
            "ttl": self._ttl_seconds,
            "idempotency_ttl": idempotency_ttl_seconds,
            "created_at": record.created_at.timestamp(),
            "fingerprint": record.fingerprint(),
            "lease": lease_seconds,
            "record_prefix": keys.record(""),
            "order": order,
            "counter_created": counter_created,
            "counter_merged": counter_merged,
            "counter_idempotent": counter_idempotent,
            "message": message.payload if message else "",
        }
        return script_keys, args

    def release_unpublished(self, request_id: str, dispatch: int) -> None:
        """A new request's task message could not be published: make it due now, so the next
        scheduler pass releases it. Nothing is deleted, since a concurrent identical
        submission or an idempotent redelivery may already have been handed its id."""
        self._release_unpublished(
            keys={"due_key": self._keys.due_index, "dispatched_key": self._keys.dispatched},
            args={"id": request_id, "dispatch": dispatch},
        )

    def begin(self, request_id: str, lease_seconds: float, dispatch: int | None) -> Begun:
        """Take a request for one run of its task, with a fencing token (see `Begun`).

        Args:
            request_id: the request.
            lease_seconds: if this run goes silent for this long (its worker died), the
                scheduler releases the request again.
            dispatch: the dispatch number its task message carried, if any.
        """
        keys = self._keys
        reply = self._begin(
            keys={
                "record_key": keys.record(request_id),
                "due_key": keys.due_index,
                "dispatched_key": keys.dispatched,
                "consumed_key": keys.dispatch_consumed,
            },
            args={
                "id": request_id,
                "lease": lease_seconds,
                "carried_dispatch": "" if dispatch is None else dispatch,
            },
        )
        verdict = str(reply[0])
        if verdict != "ok":
            return Begun(verdict)
        _, token, doc, status, merges, interrupted = reply
        record = ResendRecord.model_validate_json(doc)
        record.status = ResendStatus(str(status))
        record.merges = int(merges)
        started = int(interrupted) / 1000 if str(interrupted) not in ("", "0") else None
        return Begun("ok", str(token), record, started)

    def drop_orphan(self, request_id: str, promote_margin_seconds: float) -> bool:
        """Take a request whose record has gone off every index, and let its order's next
        request go; True when it was such an orphan."""
        keys = self._keys
        found = self._client.hget(keys.unfinished_orders, request_id)
        order = None if found is None else str(found)
        return bool(
            self._drop_orphan(
                keys={
                    "record_key": keys.record(request_id),
                    "due_key": keys.due_index,
                    "dispatched_key": keys.dispatched,
                    "unfinished_key": keys.unfinished_orders,
                    "fifo_key": keys.order_fifo(order) if order else "",
                    "pending_key": keys.order_pending(order) if order else "",
                    "window_key": keys.order_window(order) if order else "",
                },
                args={"id": request_id, "promote_margin": promote_margin_seconds},
            )
        )

    def get(self, request_id: str) -> ResendRecord | None:
        found = self.get_many([request_id])
        return found[0] if found else None

    def save(
        self,
        record: ResendRecord,
        due_at: float | None,
        window: WindowAction = KEEP_WINDOW,
        token: str = "",
    ) -> bool:
        """Store a record that is not final, with its due-index score (epoch seconds; None
        leaves it) and, in the same step, the order's window (see `WindowAction`). Refused
        (False) when the request was finished or cancelled meanwhile, or when `token` (a run's
        fencing token from `begin`) is no longer the request's current one."""
        if record.status.is_final:
            raise ValueError("use finish() for a final status")
        window_key = "" if window is None else self._keys.order_window(record.reference_order_id)
        return bool(
            self._save(
                keys={
                    "record_key": self._keys.record(record.id),
                    "due_key": self._keys.due_index,
                    "window_key": window_key,
                },
                args={
                    "id": record.id,
                    "doc": record.model_dump_json(),
                    "status": record.status.value,
                    "due_score": "" if due_at is None else _score(due_at),
                    "window_action": _window_arg(window),
                    "run_token": token,
                },
            )
        )

    def finish(
        self,
        record: ResendRecord,
        promote_margin_seconds: float,
        window: WindowAction = KEEP_WINDOW,
        token: str = "",
    ) -> bool:
        """Store a final record, set the order's window, take the request off its order's
        queue and put the next request of the order in the due index for when the window
        ends (plus a margin): one atomic step. Refused (False) when the request is already
        final, or `token` is no longer the request's current run."""
        if not record.status.is_final:
            raise ValueError("finish() takes a final status")
        return (
            self._finish_script(
                record.id,
                record.reference_order_id,
                record.fingerprint(),
                record.model_dump_json(),
                record.status.value,
                promote_margin_seconds,
                only_if_cancellable=False,
                window=window,
                token=token,
                delay_seconds=(
                    (record.sent_at - record.created_at).total_seconds()
                    if record.sent_at is not None
                    else None
                ),
            )
            == "done"
        )

    def cancel(self, request_id: str, promote_margin_seconds: float) -> str:
        """Cancel a queued or deferred request, atomically with its order's queue.

        Returns "cancelled", "in_flight" (a call to Tango is under way), "unknown", or the
        final status it already had.
        """
        return self.try_cancel(request_id, promote_margin_seconds)[0]

    def try_cancel(self, request_id: str, promote_margin_seconds: float) -> tuple[str, bool]:
        """As `cancel`, and whether this very call did the cancelling (racing cancellers:
        exactly one gets True)."""
        record = self.get(request_id)
        if record is None:
            return "unknown", False
        if record.status.is_final:
            return record.status.value, False
        record.status = ResendStatus.CANCELLED
        record.reason = "cancelled before it was sent"
        record.updated_at = self._clock.now()
        result = self._finish_script(
            request_id,
            record.reference_order_id,
            record.fingerprint(),
            record.model_dump_json(),
            record.status.value,
            promote_margin_seconds,
            only_if_cancellable=True,
        )
        return ("cancelled", True) if result == "done" else (result, False)

    def _finish_script(
        self,
        request_id: str,
        order: str,
        fingerprint: str,
        doc: str,
        status: str,
        margin: float,
        *,
        only_if_cancellable: bool,
        window: WindowAction = KEEP_WINDOW,
        token: str = "",
        delay_seconds: float | None = None,
    ) -> str:
        keys = self._keys
        result = self._finish(
            keys={
                "record_key": keys.record(request_id),
                "due_key": keys.due_index,
                "fifo_key": keys.order_fifo(order),
                "pending_key": keys.order_pending(order),
                "window_key": keys.order_window(order),
                "outbox_key": self._outbox,
                "dispatched_key": keys.dispatched,
                "unfinished_key": keys.unfinished_orders,
                "metrics_key": keys.metrics,
            },
            args={
                "id": request_id,
                "doc": doc,
                "status": status,
                "fingerprint": fingerprint,
                "promote_margin": margin,
                "only_if_cancellable": "1" if only_if_cancellable else "",
                "window_action": _window_arg(window),
                "run_token": token,
                "metric_counts": json.dumps(outcome_fields(status, delay_seconds)),
            },
        )
        return str(result)

    def get_many(self, request_ids: list[str]) -> list[ResendRecord]:
        """Records for many ids in one round trip; unknown or expired ones are skipped."""
        with self._client.pipeline(transaction=False) as pipe:
            for request_id in request_ids:
                pipe.hmget(self._keys.record(request_id), ["doc", "status", "merges"])
            rows = pipe.execute()
        records = []
        for doc, status, merges in rows:
            if doc is None:
                continue
            record = ResendRecord.model_validate_json(doc)
            record.status = ResendStatus(str(status)) if status else record.status
            record.merges = int(merges or 0)
            records.append(record)
        return records

    def ids_by_time(
        self, since: float | None, newest_first: bool, offset: int, count: int
    ) -> list[str]:
        """Request ids created at or after `since` (epoch seconds), a page at a time."""
        low = "-inf" if since is None else repr(since)
        if newest_first:
            ids = self._client.zrevrangebyscore(
                self._keys.requests_by_time, "+inf", low, start=offset, num=count
            )
        else:
            ids = self._client.zrangebyscore(
                self._keys.requests_by_time, low, "+inf", start=offset, num=count
            )
        return [str(item) for item in ids]

    def ids_for_order(self, reference_order_id: str) -> list[str]:
        """Request ids for one order, oldest first."""
        ids = self._client.zrange(self._keys.order_requests(reference_order_id), 0, -1)
        return [str(item) for item in ids]


def _window_arg(window: WindowAction) -> str:
    if window is None:
        return ""
    if window == RELEASE_WINDOW:
        return "release"
    return str(window_milliseconds(float(window)))


def _score(epoch_seconds: float) -> str:
    if math.isinf(epoch_seconds):
        return "+inf" if epoch_seconds > 0 else "-inf"
    return repr(epoch_seconds)
