"""Resend records: the source of truth for a request's state, kept in Redis with a TTL.

A record is a Redis hash: `doc` (the JSON of `ResendRecord`), `status` (authoritative: the
scripts that cancel or finish a request change it atomically with the order's queue) and
`merges` (identical requests coalesced into this one). State changes that touch several keys
(the order's FIFO, its pending fingerprints, the due index) are single Lua scripts in
`worker/state/lua/*.lua`, so two processes never interleave halfway.
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import redis

from worker.state import record_codec, scripts
from worker.state.clock import Clock, RedisClock
from worker.state.durability import NotReplicated, ReplicaWait
from worker.state.keys import RedisKeys
from worker.state.metrics import RECENT_COUNTER, SUBMISSION_COUNTERS, outcome_fields

# The record's model lives in record_model; these names are re-exported for the many modules
# (and users' code) that have always imported them from here.
from worker.state.record_model import AttemptEntry as AttemptEntry
from worker.state.record_model import AttemptOutcome as AttemptOutcome
from worker.state.record_model import ConfirmedBy as ConfirmedBy
from worker.state.record_model import ResendRecord as ResendRecord
from worker.state.record_model import ResendStatus as ResendStatus
from worker.state.record_model import new_request_id as new_request_id
from worker.state.record_model import order_in_request_id, recipient_key
from worker.state.record_model import request_fingerprint as request_fingerprint
from worker.state.scripts import ScriptValue
from worker.state.window import window_milliseconds


@dataclass(frozen=True)
class TaskMessage:
    """One task message as kombu's Redis transport would LPUSH it (built by
    `worker/queueing/task_messages.py`), pushed by the script that creates the request."""

    list_key: str
    payload: str


class SubmissionOutcome(StrEnum):
    """What the create script did with a submission (`Creation`, and the producer's public
    `Submission`); the values are the script's words, and those of JSON and CLI output."""

    CREATED = "created"  # a new request
    IDEMPOTENT = "idempotent"  # its idempotency key was seen before: that request's id
    MERGED = "merged"  # coalesced into an identical pending request of the order
    RECENT = "recent"  # the order was sent to the same recipient within RESEND_RECENT_SECONDS


CreateArguments = tuple[ResendRecord, str | None, int, float, TaskMessage | None, float]
"""`RecordStore.create`'s arguments: record, idempotency key, its TTL in seconds, lease in
seconds, task message, and the recent-resend guard's span in seconds (0: off)."""


@dataclass(frozen=True)
class Creation:
    """What `RecordStore.create` did."""

    request_id: str
    outcome: SubmissionOutcome
    is_head: bool  # the first waiting request of its order: its task may run now
    # The number its task message carries (0 when none is to be sent); not part of equality,
    # since it only numbers the message.
    dispatch: int = field(default=0, compare=False)


def creation_from_reply(reply: Any) -> Creation:
    """What the create script's reply says it did."""
    request_id, outcome, head, dispatch = reply
    return Creation(
        str(request_id), SubmissionOutcome(str(outcome)), bool(int(head)), int(dispatch)
    )


class BeginVerdict(StrEnum):
    """What the BEGIN script found when a worker took a request's task message."""

    OK = "ok"  # this run holds the request: `Begun.token` fences its writes
    UNKNOWN = "unknown"  # no record
    FINAL = "final"  # nothing left to do
    BUSY = "busy"  # a call for it is in flight; it is released again when that call's hold ends


@dataclass(frozen=True)
class Begun:
    """What `RecordStore.begin` found (see `BeginVerdict`); `record` is the request when the
    verdict is `ok`, else None."""

    verdict: BeginVerdict
    token: str = ""
    record: ResendRecord | None = None
    # "ok" only: the start (Redis's clock, epoch seconds) of a call that passed the gate and
    # whose outcome nobody stored (its worker died mid-call), else None.
    interrupted_call_started_at: float | None = None


def begin_arguments(
    keys: RedisKeys, request_id: str, lease_seconds: float, dispatch: int | None
) -> tuple[dict[str, str], dict[str, ScriptValue]]:
    """KEYS and ARGV of lib/begin_run.lua, for begin.lua and start.lua alike."""
    return (
        {
            "record_key": keys.record(request_id),
            "due_key": keys.due_index,
            "dispatched_key": keys.dispatched,
            "consumed_key": keys.dispatch_consumed,
        },
        {
            "id": request_id,
            "lease": lease_seconds,
            "carried_dispatch": "" if dispatch is None else dispatch,
        },
    )


def begun_from_reply(request_id: str, reply: Any) -> Begun:
    """What lib/begin_run.lua's reply says (begin.lua's, and the start of start.lua's)."""
    verdict = BeginVerdict(str(reply[0]))
    if verdict is not BeginVerdict.OK:
        return Begun(verdict)
    token, doc, status, merges, interrupted, audit = reply[1:7]
    record = record_codec.decode(str(doc), request_id, str(status), int(merges))
    # Who asked, forced, who cancelled: beside the document in the hash, read in the same step.
    record = record_codec.with_audit(record, json.loads(str(audit)))
    started = int(interrupted) / 1000 if str(interrupted) not in ("", "0") else None
    return Begun(BeginVerdict.OK, str(token), record, started)


class FinishResult(StrEnum):
    """The FINISH script's answer, when it is not the final status the request already had
    (`finish_result_from_reply`)."""

    DONE = "done"  # stored: the request is final now
    UNKNOWN = "unknown"  # no record
    IN_FLIGHT = "in_flight"  # a cancel while a call to Tango is under way: too late
    STALE = "stale"  # a newer run holds the request: this run's outcome is not stored
    CHANGED = "changed"  # the stored document changed since the caller read it: read again


def finish_result_from_reply(reply: Any) -> FinishResult | ResendStatus:
    """The FINISH script's answer: a `FinishResult`, or the final status the request had
    already reached (then nothing was stored)."""
    text = str(reply)
    if text in FinishResult.__members__.values():
        return FinishResult(text)
    return ResendStatus(text)


class CancelResult(StrEnum):
    """What a cancel did (`RecordStore.cancel`, the public `cancel_resend`); the values are
    the ones the API, the CLI's --json and the REST API have always given."""

    CANCELLED = "cancelled"  # cancelled now, or it already was
    IN_FLIGHT = "in_flight"  # its call to Tango is under way: too late
    SENT = "sent"  # already final
    FAILED = "failed"  # already final
    UNKNOWN = "unknown"  # no such request (never existed, or expired)


# A start, save or finish reply is kept this long under its call's nonce (`RedisKeys.script_reply`):
# redis-py replays a script within its retries, seconds after the reply was lost.
SCRIPT_REPLY_MEMO_SECONDS = 60

# The fleet's word that it delivers outcome callbacks lasts this long after its last finish
# (or start) in a process with RESULT_WEBHOOK_URL: a fleet that stops delivering them stops
# owing them a day later.
CALLBACKS_FLEET_SECONDS = 24 * 3600

# A compare-and-set that finds the record changed reads it again; a run stores a request a
# few times a minute at most, so a handful of tries is plenty.
_COMPARE_AND_SET_TRIES = 8

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
        pending_counts: Callable[[], Mapping[str, float]] | None = None,
        wait: ReplicaWait | None = None,
    ) -> None:
        self._client = client
        # REDIS_WAIT_REPLICAS: a new request and a final status are confirmed on replicas
        # before anyone is told of them (worker/state/durability.py); None: not waited for.
        self._wait = wait
        # Metrics this thread recorded and has not sent yet (MetricsRecorder.take_pending): the
        # scripts that save and finish a request add them in the same round trip.
        self._pending_counts = pending_counts
        self._clock = clock or RedisClock(client)
        self._keys = keys
        self._ttl_seconds = ttl_seconds
        # Whether callbacks are owed is the fleet's fact, kept in Redis (`callbacks_fleet`):
        # a process that delivers them says so, and every process's finish reads it.
        self._callbacks_here = callbacks
        if callbacks:
            with contextlib.suppress(redis.RedisError):  # said again by each finish here
                client.set(keys.callbacks_fleet, "1", ex=CALLBACKS_FLEET_SECONDS)
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
        recent_seconds: float = 0,
    ) -> Creation:
        """Store a new request, unless its idempotency key or an identical pending request
        already stands for it, or (`recent_seconds` > 0) its order was sent to the same
        recipient within that many seconds; then that request's id is returned and nothing
        is stored.

        A new request first in its order's queue gets `message` (its task message) pushed to
        the broker in the same step; without one it is due at once, for the scheduler to
        publish.

        Raises:
            NotReplicated: REDIS_WAIT_REPLICAS is set and the request (record, idempotency
                key, task message) is not on that many replicas yet. It may be stored: the
                same submission again (same idempotency key, or identical while pending)
                finds it rather than adding a second.
        """
        keys, args = self.create_arguments(
            record, idempotency_key, idempotency_ttl_seconds, lease_seconds, message,
            recent_seconds,
        )  # fmt: skip
        if self._wait is None:
            return creation_from_reply(self._create(keys=keys, args=args))
        # The script always writes (it counts the submission, whatever its outcome), so the
        # WAIT behind it also covers a request an earlier, unconfirmed submission stored.
        reply, acknowledged = self._create.call_then(keys, args, *self._wait.command)
        self._wait.require(acknowledged, "the request")
        return creation_from_reply(reply)

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
            if self._wait is not None:
                self._wait.queue(pipe)
            replies = pipe.execute(raise_on_error=False)
        if self._wait is not None:
            acknowledged = replies.pop()
            if isinstance(acknowledged, redis.RedisError):
                raise acknowledged
            if not self._wait.confirmed(acknowledged):
                # Stored perhaps, promised not: each is found again by its idempotency key.
                missing = NotReplicated("the requests", int(acknowledged), self._wait)
                replies = [
                    reply if isinstance(reply, redis.RedisError) else missing for reply in replies
                ]
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
        recent_seconds: float = 0,
    ) -> tuple[dict[str, str], dict[str, ScriptValue]]:
        """KEYS and ARGV of the create script for `create` (also run by the webhook
        receiver's asyncio client: see `worker.resend.producer.submit_resend_async`)."""
        keys = self._keys
        order = record.reference_order_id
        script_keys = {
            "record_key": keys.record(record.id),
            "idempotency_key": keys.idempotency(idempotency_key) if idempotency_key else "",
            "due_key": keys.due_index,
            "order_key": keys.order_fifo(order),
            "legacy_pending_key": keys.order_pending(order),
            "sequence_key": keys.sequence,
            "by_time_key": keys.requests_by_time,
            "dispatched_key": keys.dispatched,
            "dispatch_sequence_key": keys.dispatch_sequence,
            "metrics_key": keys.metrics,
            "queue_key": message.list_key if message else "",
        }
        counter_created, counter_merged, counter_idempotent = SUBMISSION_COUNTERS
        args: dict[str, ScriptValue] = {
            "id": record.id,
            "doc": record_codec.encode(record),
            "ttl": self._ttl_seconds,
            "idempotency_ttl": idempotency_ttl_seconds,
            "created_at": record.created_at.timestamp(),
            "fingerprint": record.fingerprint(),
            "lease": lease_seconds,
            "record_prefix": keys.record(""),
            "counter_created": counter_created,
            "counter_merged": counter_merged,
            "counter_idempotent": counter_idempotent,
            "message": message.payload if message else "",
            "recent_seconds": recent_seconds,
            "recipient": recipient_key(record.request),
            "counter_recent": RECENT_COUNTER,
            "audit": json.dumps(record_codec.audit_values(record)),
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
        keys, args = begin_arguments(self._keys, request_id, lease_seconds, dispatch)
        reply = self._begin(keys=keys, args=args)
        return begun_from_reply(request_id, reply)

    def drop_orphan(self, request_id: str, promote_margin_seconds: float) -> bool:
        """Take a request whose record has gone off every index, and let its order's next
        request go; True when it was such an orphan."""
        keys = self._keys
        order = order_in_request_id(request_id)
        if order is None:  # an id an earlier version made: it kept the order in an index
            found = self._client.hget(keys.unfinished_orders, request_id)
            order = None if found is None else str(found)
        return bool(
            self._drop_orphan(
                keys={
                    "record_key": keys.record(request_id),
                    "due_key": keys.due_index,
                    "dispatched_key": keys.dispatched,
                    "legacy_unfinished_key": keys.unfinished_orders,
                    "order_key": keys.order_fifo(order) if order else "",
                    "legacy_pending_key": keys.order_pending(order) if order else "",
                    "window_key": keys.order_window(order) if order else "",
                },
                args={"id": request_id, "promote_margin": promote_margin_seconds},
            )
        )

    def get(self, request_id: str) -> ResendRecord | None:
        found = self.get_many([request_id])
        return found[0] if found else None

    def get_reported(self, request_id: str) -> ResendRecord | None:
        """`get`, for a record about to be reported outside (the CLI, the API, an outcome
        callback): with REDIS_WAIT_REPLICAS set, a final status is returned only once it is
        on that many replicas, since a failover could still take it back.

        Raises:
            NotReplicated: the record is final, and its final status not yet on the
                replicas (read it again later).
        """
        if self._wait is None:
            return self.get(request_id)
        key = self._keys.record(request_id)
        (fields,), confirmed = self._wait.read_confirmed(
            self._client, self._keys.replication_barrier, lambda pipe: pipe.hgetall(key)
        )
        record = self._decoded(request_id, fields)
        if record is not None and record.status.is_final and not confirmed:
            raise NotReplicated(f"request {request_id} is {record.status.value}", 0, self._wait)
        return record

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
                    "metrics_key": self._keys.metrics,
                    "memo_key": self._keys.script_reply(uuid.uuid4().hex),
                },
                args={
                    "id": record.id,
                    "doc": record_codec.encode(record),
                    "status": record.status.value,
                    "due_score": "" if due_at is None else _score(due_at),
                    "window_action": _window_arg(window),
                    "run_token": token,
                    "run_counts": self._counts_to_send(),
                    "not_before": (
                        "" if record.next_attempt_at is None else record.next_attempt_at.timestamp()
                    ),
                    "probe_next": "1" if record.unresolved_call_started_at is not None else "",
                    "memo_ttl": SCRIPT_REPLY_MEMO_SECONDS,
                },
            )
        )

    def finish(
        self,
        record: ResendRecord,
        promote_margin_seconds: float,
        window: WindowAction = KEEP_WINDOW,
        token: str = "",
        answer_in_hand: bool = False,
    ) -> bool:
        """Store a final record, set the order's window, take the request off its order's
        queue and put the next request of the order in the due index for when the window
        ends (plus a margin): one atomic step. Refused (False) when the request is already
        final, or `token` is no longer the request's current run, unless `answer_in_hand`
        (the run holds Tango's 201, a fact to store whichever run holds the request now).
        The same run asking again after a `NotReplicated` gets True once it is confirmed.

        Raises:
            NotReplicated: REDIS_WAIT_REPLICAS is set and the final status, stored, is not
                on that many replicas yet: report it to nobody; ask again.
        """
        if not record.status.is_final:
            raise ValueError("finish() takes a final status")
        return (
            self._finish_script(
                record,
                promote_margin_seconds,
                only_if_cancellable=False,
                window=window,
                token=token,
                send_delay_seconds=(
                    (record.sent_at - record.created_at).total_seconds()
                    if record.status is ResendStatus.SENT and record.sent_at is not None
                    else None
                ),
                answer_in_hand=answer_in_hand,
            )
            is FinishResult.DONE
        )

    def cancel(self, request_id: str, promote_margin_seconds: float) -> CancelResult:
        """Cancel a queued or deferred request, atomically with its order's queue.

        Returns `cancelled`, `in_flight` (a call to Tango is under way), `unknown`, or the
        final status it already had (see `CancelResult`).
        """
        return self.try_cancel(request_id, promote_margin_seconds)[0]

    def try_cancel(
        self, request_id: str, promote_margin_seconds: float, by: str | None = None
    ) -> tuple[CancelResult, bool]:
        """As `cancel`, and whether this very call did the cancelling (racing cancellers:
        exactly one gets True); the record keeps who cancelled it (`by`) and when."""
        for _ in range(_COMPARE_AND_SET_TRIES):
            result = self._finish_read_copy(
                request_id,
                promote_margin_seconds,
                ResendStatus.CANCELLED,
                "cancelled before it was sent",
                only_if_cancellable=True,
            )
            if result is FinishResult.DONE:
                self._note_cancelled_by(request_id, by)
                return CancelResult.CANCELLED, True
            if result is not FinishResult.CHANGED:
                # `unknown`, `in_flight` or the final status it reached meanwhile (never
                # `stale`: a cancel passes no run token).
                return CancelResult(result.value), False
        raise redis.RedisError(f"request {request_id} kept changing while it was cancelled")

    def _note_cancelled_by(self, request_id: str, by: str | None) -> None:
        """Who cancelled and when, beside the record's document (record_codec's audit
        fields): only the cancel that won writes them."""
        audit = ResendRecord.model_construct(cancelled_by=by, cancelled_at=self._clock.now())
        values = record_codec.audit_values(audit)
        self._client.hset(
            self._keys.record(request_id),
            mapping={key: value for key, value in values.items() if key in ("cb", "ca")},
        )

    def callers_sharing(self, request_id: str) -> int:
        """How many callers share a request: the one that created it and each identical
        request merged into it since (0 when there is no such request)."""
        fields = self._client.hmget(self._keys.record(request_id), "status", "merges")
        if fields[0] is None:
            return 0
        return 1 + int(fields[1] or 0)

    def finish_unowned(
        self, request_id: str, status: ResendStatus, reason: str, promote_margin_seconds: float
    ) -> bool:
        """Finish a request that no run of this process holds (a bug before the run began):
        only when no call to Tango is in flight or of unknown outcome, and keeping whatever
        a run stored meanwhile (status and reason are the only changes). True if stored."""
        for _ in range(_COMPARE_AND_SET_TRIES):
            result = self._finish_read_copy(
                request_id, promote_margin_seconds, status, reason, only_if_cancellable=True
            )
            if result is not FinishResult.CHANGED:
                return result is FinishResult.DONE
        return False

    def _finish_read_copy(
        self,
        request_id: str,
        promote_margin_seconds: float,
        status: ResendStatus,
        reason: str,
        *,
        only_if_cancellable: bool,
    ) -> FinishResult | ResendStatus:
        """Read the record, set a final status and reason on it, and store it only if its
        document is still the one read (compare-and-set): `changed` says to read it again."""
        # A client of ours decodes replies (decode_responses): fields and values are str.
        fields = cast(dict[str, str], self._client.hgetall(self._keys.record(request_id)))
        stored, current = record_codec.stored_doc(fields), fields.get("status")
        if stored is None or current is None:
            return FinishResult.UNKNOWN
        record = record_codec.decode(
            stored, request_id, str(current), int(fields.get("merges") or 0)
        )
        if record.status.is_final:
            return record.status
        record.status = status
        record.reason = reason
        record.next_attempt_at = None
        record.updated_at = self._clock.now()
        return self._finish_script(
            record,
            promote_margin_seconds,
            only_if_cancellable=only_if_cancellable,
            expected_doc=stored,
        )

    def _finish_script(
        self,
        record: ResendRecord,
        margin: float,
        *,
        only_if_cancellable: bool,
        window: WindowAction = KEEP_WINDOW,
        token: str = "",
        send_delay_seconds: float | None = None,
        answer_in_hand: bool = False,
        expected_doc: str = "",
    ) -> FinishResult | ResendStatus:
        keys, order, status = self._keys, record.reference_order_id, record.status.value
        script_keys: dict[str, str] = {
            "record_key": keys.record(record.id),
            "due_key": keys.due_index,
            "order_key": keys.order_fifo(order),
            "legacy_pending_key": keys.order_pending(order),
            "window_key": keys.order_window(order),
            "outbox_key": keys.callbacks_due,
            "dispatched_key": keys.dispatched,
            "legacy_unfinished_key": keys.unfinished_orders,
            "metrics_key": keys.metrics,
            "memo_key": keys.script_reply(uuid.uuid4().hex),
            "callbacks_fleet_key": keys.callbacks_fleet,
        }
        args: dict[str, ScriptValue] = {
            "id": record.id,
            "doc": record_codec.encode(record),
            "status": status,
            "fingerprint": record.fingerprint(),
            "promote_margin": margin,
            "only_if_cancellable": "1" if only_if_cancellable else "",
            "window_action": _window_arg(window),
            "run_token": token,
            "metric_counts": json.dumps(outcome_fields(status, send_delay_seconds)),
            "run_counts": self._counts_to_send(),
            "created_at": record.created_at.timestamp(),
            "answer_in_hand": "1" if answer_in_hand else "",
            "expected_doc": expected_doc,
            "memo_ttl": SCRIPT_REPLY_MEMO_SECONDS,
            "callbacks_here": "1" if self._callbacks_here else "",
            "callbacks_ttl": CALLBACKS_FLEET_SECONDS,
        }
        if self._wait is None:
            return finish_result_from_reply(self._finish(keys=script_keys, args=args))
        reply, acknowledged = self._finish.call_then(script_keys, args, *self._wait.command)
        result = finish_result_from_reply(reply)
        if result is FinishResult.DONE:
            self._wait.require(acknowledged, f"request {record.id}'s final status")
        return result

    def _counts_to_send(self) -> str:
        counts = self._pending_counts() if self._pending_counts is not None else {}
        return json.dumps(counts) if counts else ""

    def get_many(self, request_ids: list[str]) -> list[ResendRecord]:
        """Records for many ids in one round trip; unknown or expired ones are skipped."""
        with self._client.pipeline(transaction=False) as pipe:
            for request_id in request_ids:
                pipe.hgetall(self._keys.record(request_id))
            rows = pipe.execute()
        records = []
        for request_id, fields in zip(request_ids, rows, strict=True):
            record = self._decoded(request_id, fields)
            if record is not None:
                records.append(record)
        return records

    @staticmethod
    def _decoded(request_id: str, fields: Mapping[str, Any]) -> ResendRecord | None:
        doc, status = record_codec.stored_doc(fields), fields.get("status")
        if doc is None or status is None:
            return None
        merges = int(fields.get("merges") or 0)
        record = record_codec.decode(doc, request_id, str(status), merges)
        return record_codec.with_audit(record, fields)

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

    def first_waiting(self, reference_order_id: str) -> str | None:
        """The request of the order whose turn it is (the head of its queue), if any."""
        head = self._client.zrangebyscore(
            self._keys.order_fifo(reference_order_id), "(0", "+inf", start=0, num=1
        )
        return str(head[0]) if head else None

    def ids_for_order(self, reference_order_id: str) -> list[str]:
        """Request ids for one order, oldest first (by creation time)."""
        return [request_id for request_id, _ in self.order_history_times(reference_order_id)]

    def order_history_times(self, reference_order_id: str) -> list[tuple[str, float]]:
        """(request id, creation time in epoch seconds) for every request of one order,
        oldest first: the scores the time index gives them, read without their records."""
        keys = self._keys
        with self._client.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.order_requests(reference_order_id), 0, -1, withscores=True)
            pipe.zrange(keys.order_fifo(reference_order_id), 0, -1, withscores=True)
            legacy, entries = pipe.execute()
        # An earlier version's history scores creation times; the order's sorted set scores a
        # finished request minus its creation time and a waiting one its place in the queue,
        # whose creation time the time index holds (none there: older than the TTL, first).
        created = {str(member): float(score) for member, score in legacy}
        created.update({str(member): -float(score) for member, score in entries if score < 0})
        waiting = [str(member) for member, score in entries if score > 0]
        if waiting:
            times = self._client.zmscore(keys.requests_by_time, waiting)
            for request_id, at in zip(waiting, times, strict=True):
                created[request_id] = -math.inf if at is None else float(at)
        return sorted(created.items(), key=lambda entry: (entry[1], entry[0]))


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
