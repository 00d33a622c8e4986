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
import uuid
from collections.abc import Callable, Mapping, Sequence

import redis

from worker.state import record_codec, scripts
from worker.state.clock import Clock, RedisClock
from worker.state.durability import NotReplicated, ReplicaWait
from worker.state.keys import RedisKeys
from worker.state.metrics import RECENT_COUNTER, SUBMISSION_COUNTERS, outcome_fields
from worker.state.record_cancels import RecordCancels

# The record's model lives in record_model, the scripts' arguments and answers in
# record_replies; these names are re-exported for the many modules (and users' code) that have
# always imported them from here.
from worker.state.record_model import AttemptEntry as AttemptEntry
from worker.state.record_model import AttemptOutcome as AttemptOutcome
from worker.state.record_model import ConfirmedBy as ConfirmedBy
from worker.state.record_model import ResendRecord as ResendRecord
from worker.state.record_model import ResendStatus as ResendStatus
from worker.state.record_model import new_request_id as new_request_id
from worker.state.record_model import order_in_request_id, recipient_key
from worker.state.record_model import request_fingerprint as request_fingerprint
from worker.state.record_replies import CALLBACKS_FLEET_SECONDS as CALLBACKS_FLEET_SECONDS
from worker.state.record_replies import KEEP_WINDOW as KEEP_WINDOW
from worker.state.record_replies import PROMOTE_MARGIN_SECONDS as PROMOTE_MARGIN_SECONDS
from worker.state.record_replies import RELEASE_WINDOW as RELEASE_WINDOW
from worker.state.record_replies import SCRIPT_REPLY_MEMO_SECONDS as SCRIPT_REPLY_MEMO_SECONDS
from worker.state.record_replies import BeginVerdict as BeginVerdict
from worker.state.record_replies import Begun as Begun
from worker.state.record_replies import CancelResult as CancelResult
from worker.state.record_replies import CreateArguments as CreateArguments
from worker.state.record_replies import Creation as Creation
from worker.state.record_replies import FinishResult as FinishResult
from worker.state.record_replies import SubmissionOutcome as SubmissionOutcome
from worker.state.record_replies import TaskMessage as TaskMessage
from worker.state.record_replies import WindowAction as WindowAction
from worker.state.record_replies import begin_arguments as begin_arguments
from worker.state.record_replies import begun_from_reply as begun_from_reply
from worker.state.record_replies import creation_from_reply as creation_from_reply
from worker.state.record_replies import due_score, window_arg
from worker.state.record_replies import finish_result_from_reply as finish_result_from_reply
from worker.state.scripts import ScriptValue


class RecordStore(RecordCancels):
    """Create, read, update, finish and cancel records (reads: record_reads.py; cancels:
    record_cancels.py)."""

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
                    "due_score": "" if due_at is None else due_score(due_at),
                    "window_action": window_arg(window),
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
            "window_action": window_arg(window),
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
