"""The producer API: validate a resend, store its record, queue its task."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

# RedisUnavailable lives in the lowest layer; `worker.resend.producer.RedisUnavailable` is a
# path applications have used, hence the explicit re-export.
from worker.core.errors import RedisUnavailable as RedisUnavailable
from worker.queueing.message_builders import MessageBuilder, message_builder, task_message_or_none
from worker.resend import origins

# get_resend and cancel_resend have always been importable from here.
from worker.resend.follow_up import cancel_resend as cancel_resend
from worker.resend.follow_up import get_resend as get_resend
from worker.resend.validation import InvalidResendRequest, ResendRequest, validate_resend
from worker.runtime import AsyncCreate, Runtime, current_runtime
from worker.state.durability import NotReplicated
from worker.state.records import (
    CreateArguments,
    Creation,
    ResendRecord,
    ResendStatus,
    SubmissionOutcome,
    creation_from_reply,
    new_request_id,
)

logger = logging.getLogger("tango_resend.producer")


class EnqueueError(RedisUnavailable):
    """Raised when a valid request could not be stored or queued (Redis or broker down).

    A `RedisUnavailable`: catch that one type to handle "Redis unavailable" everywhere.
    """


def enqueue_resend(
    reference_order_id: str,
    *,
    new_email: str | None = None,
    new_mobile: str | None = None,
    new_etid: str | None = None,
    new_delivery_method: str | None = None,
    idempotency_key: str | None = None,
    force: bool = False,
    origin: str | None = None,
) -> str:
    """Queue a resend of one Tango order and return the request's id.

    Args:
        reference_order_id: Tango's order number, e.g. ``RA180426-1401-64``.
        new_email: resend to this address instead of the order's.
        new_mobile: resend to this E.164 number instead of the order's.
        new_etid: use this email template, e.g. ``E000000``.
        new_delivery_method: ``EMAIL``, ``PHONE`` or ``NONE``.
        idempotency_key: a key of the caller's; the same key within 24 hours returns the
            first request's id and queues nothing.
        force: send even if the order was sent to the same recipient within
            RESEND_RECENT_SECONDS (otherwise that earlier request's id is returned).
        origin: who is asking, recorded as "python <origin>" (e.g. "billing-job").

    Raises:
        InvalidResendRequest: naming every bad field; nothing is stored or queued.
        EnqueueError: Redis could not store the request; nothing is stored. (Once stored,
            a request is never lost: if its task cannot be published, the scheduler
            releases it.) With REDIS_WAIT_REPLICAS set, also when the request is not on
            that many replicas in time: then it may be stored and may run, and a retry
            with the same idempotency key returns its id rather than adding a second.
        ConfigurationError: a setting is missing or invalid.
    """
    fields = tango_fields(
        reference_order_id,
        new_email=new_email,
        new_mobile=new_mobile,
        new_etid=new_etid,
        new_delivery_method=new_delivery_method,
    )
    return submit_resend(
        fields, idempotency_key=idempotency_key, origin=origins.python(origin), force=force
    ).request_id


def tango_fields(
    reference_order_id: str,
    *,
    new_email: str | None = None,
    new_mobile: str | None = None,
    new_etid: str | None = None,
    new_delivery_method: str | None = None,
) -> dict[str, str]:
    """`enqueue_resend`'s arguments in Tango's field names (what `submit_resend` takes),
    leaving out the ones not given."""
    fields = {
        "referenceOrderID": reference_order_id,
        "newEmail": new_email,
        "newMobile": new_mobile,
        "newEtid": new_etid,
        "newDeliveryMethod": new_delivery_method,
    }
    return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Submission:
    """What became of a submitted request.

    `outcome` is `created`, `idempotent` (its idempotency key was seen before), `merged`
    (an identical request for the same order was still pending and now stands for it) or
    `recent` (the order was sent to the same recipient within RESEND_RECENT_SECONDS:
    `request_id` is that sent request's); a `SubmissionOutcome`, a `str` equal to those words.
    `waiting_for_turn` is true for a created request queued behind an earlier one of its order
    (shown `deferred`).
    """

    request_id: str
    outcome: SubmissionOutcome
    waiting_for_turn: bool = False

    @property
    def created(self) -> bool:
        return self.outcome == SubmissionOutcome.CREATED


def submit_resend(
    fields: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
    idempotency_ttl_seconds: int | None = None,
    origin: str | None = None,
    force: bool = False,
    requested_by: str | None = None,
    idempotency_namespace: str = "",
) -> Submission:
    """Validate a request given in Tango's field names, store it and queue its task.

    The form webhooks and files arrive in; `enqueue_resend` is the keyword-argument front.
    `idempotency_ttl_seconds` overrides RESEND_IDEMPOTENCY_TTL_SECONDS for this key; `origin`
    (who asked, in the words of `worker.resend.origins`, e.g. "webhook msg_123") is stored
    with the request and named in the one log line a submission writes; `force` passes the
    recent-resend guard (RESEND_RECENT_SECONDS); `requested_by` says who asked for a retry;
    `idempotency_namespace` (e.g. "api:") keeps one front's keys apart from the others', and
    does not count against the key's 255 characters.

    Raises:
        InvalidResendRequest: naming every bad field; nothing is stored or queued.
        EnqueueError: Redis could not store the request; nothing is stored. (Once stored,
            a request is never lost: if its task cannot be published, the scheduler
            releases it.)
    """
    runtime = current_runtime()
    pending = _prepare(
        runtime, fields, idempotency_key, retry_of, idempotency_ttl_seconds,
        _Asker(origin, requested_by, force), namespace=idempotency_namespace,
    )  # fmt: skip
    try:
        creation = runtime.records.create(*pending.arguments)
    except redis.RedisError as error:
        raise _enqueue_error(error) from error
    return _submitted(pending.record, creation)


async def submit_resend_async(
    fields: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
    idempotency_ttl_seconds: int | None = None,
    origin: str | None = None,
    create: AsyncCreate | None = None,
    force: bool = False,
) -> Submission:
    """`submit_resend` for asyncio code: the one round trip to Redis is awaited, so the event
    loop serves other requests meanwhile (the webhook receiver's path). Same arguments,
    results and exceptions; `create` is an `AsyncCreate` opened in this loop (one is opened
    and closed for this call when not given)."""
    runtime = current_runtime()
    pending = _prepare(
        runtime, fields, idempotency_key, retry_of, idempotency_ttl_seconds,
        _Asker(origin, None, force),
    )  # fmt: skip
    keys, args = runtime.records.create_arguments(*pending.arguments)
    script = create or AsyncCreate(runtime.settings)
    try:
        creation = creation_from_reply(await script(keys, args))
    except redis.RedisError as error:
        raise _enqueue_error(error) from error
    finally:
        if create is None:
            await script.aclose()
    return _submitted(pending.record, creation)


def submit_many(
    requests: Sequence[tuple[dict[str, Any], str | None]],
    *,
    idempotency_ttl_seconds: int | None = None,
    origin: str | None = None,
    origins_by_request: Sequence[str] | None = None,
    force: bool = False,
) -> list[Submission | InvalidResendRequest | EnqueueError]:
    """`submit_resend` for many requests at once, each given as (fields, idempotency key):
    one round trip to Redis for all of them (`RecordStore.create_many`), and their task
    messages built from one template. They are stored in the order given, exactly as if each
    had been submitted in turn: a repeated key, or a request identical to one before it, is
    "idempotent" or "merged" the same way.

    Returns one result per request, in order, and raises nothing for a single request: its
    `Submission`; the `InvalidResendRequest` that refused it (nothing stored for it; the
    others go on); or the `EnqueueError` of a Redis failure. When Redis refused one request
    alone, the others still ran; when the round trip failed as a whole (Redis
    unreachable, the connection lost), every valid request has that `EnqueueError`, and
    which of them were stored is unknown (resubmit them under the same idempotency keys).
    `origins_by_request` gives each request its own origin (a file's rows), else `origin`
    is every request's; `force` passes the recent-resend guard for all of them.
    """
    runtime = current_runtime()
    results: list[Submission | InvalidResendRequest | EnqueueError | None] = [None] * len(requests)
    pending: list[tuple[int, _Pending]] = []
    message = message_builder(runtime.settings.resend_queue)
    failure: EnqueueError | None = None
    for index, (fields, key) in enumerate(requests):
        try:
            if failure is not None:  # the clock could not be read: Redis is failing
                _validated(fields, key)
                results[index] = failure
                continue
            asker = _Asker(origins_by_request[index] if origins_by_request else origin, None, force)
            prepared = _prepare(runtime, fields, key, None, idempotency_ttl_seconds, asker, message)
        except InvalidResendRequest as error:
            results[index] = error
            continue
        except EnqueueError as error:
            results[index] = failure = error
            continue
        pending.append((index, prepared))
    try:
        creations = runtime.records.create_many([item.arguments for _, item in pending])
    except redis.RedisError as error:
        creations = [error] * len(pending)
    for (index, item), creation in zip(pending, creations, strict=True):
        if isinstance(creation, redis.RedisError):
            results[index] = _enqueue_error(creation)
        else:
            results[index] = _submitted(item.record, creation)
    answered = [result for result in results if result is not None]
    if len(answered) != len(requests):
        raise AssertionError("a request of submit_many was left without a result")
    return answered


def _enqueue_error(error: redis.RedisError) -> EnqueueError:
    """The producer's error for a failed create: not stored, or (REDIS_WAIT_REPLICAS) stored
    but not yet on the replicas. Either way nothing is promised, and the same submission
    again (same idempotency key) adds no second request."""
    if isinstance(error, NotReplicated):
        return EnqueueError(
            f"the request is not confirmed ({error}); submit it again with the same "
            "idempotency key: it is found, not added twice"
        )
    return EnqueueError(f"could not store the request: {error}")


@dataclass(frozen=True)
class _Pending:
    """A validated request, ready for the create script."""

    record: ResendRecord
    arguments: CreateArguments


@dataclass(frozen=True)
class _Asker:
    """Who asks (stored with the request) and whether the recent-resend guard applies."""

    origin: str | None
    requested_by: str | None = None
    force: bool = False


def _prepare(
    runtime: Runtime,
    fields: dict[str, Any],
    idempotency_key: str | None,
    retry_of: str | None,
    idempotency_ttl_seconds: int | None,
    asker: _Asker,
    message: MessageBuilder | None = None,
    namespace: str = "",
) -> _Pending:
    """Validate and build the record and its task message (by `message`, given the request's
    id; by default `task_message_or_none`); no I/O but the clock's."""
    request = _validated(fields, idempotency_key)
    if idempotency_key is not None:
        idempotency_key = namespace + idempotency_key
    settings = runtime.settings
    try:
        now = runtime.clock.now()
    except redis.RedisError as error:
        raise EnqueueError(f"could not store the request: {error}") from error
    record = ResendRecord(
        id=new_request_id(request.reference_order_id),
        reference_order_id=request.reference_order_id,
        request=request.tango_body(),
        status=ResendStatus.QUEUED,
        created_at=now,
        updated_at=now,
        retry_of=retry_of,
        origin=origins.bounded(asker.origin) if asker.origin else None,
        requested_by=origins.bounded(asker.requested_by) if asker.requested_by else None,
        forced=asker.force and settings.resend_recent_seconds > 0,
    )
    return _Pending(
        record,
        (
            record,
            idempotency_key,
            idempotency_ttl_seconds or settings.resend_idempotency_ttl_seconds,
            settings.resend_lease_seconds,
            message(record.id)
            if message is not None
            else task_message_or_none(record.id, settings.resend_queue),
            0 if asker.force else settings.resend_recent_seconds,
        ),
    )


def _validated(fields: dict[str, Any], idempotency_key: str | None) -> ResendRequest:
    request = validate_resend(fields)
    if idempotency_key is not None and not _usable_key(idempotency_key):
        raise InvalidResendRequest({"idempotency_key": "must be text of 1 to 255 characters"})
    return request


def _submitted(record: ResendRecord, creation: Creation) -> Submission:
    """Log what became of a submission (the create script counted it: accepted, coalesced,
    or, for a repeated idempotency key such as a webhook replay, a redelivery)."""
    if creation.outcome != SubmissionOutcome.CREATED:
        logger.info(
            "request=%s stands for a new %s request%s",
            creation.request_id,
            creation.outcome,
            _from(record.origin),
        )
        return Submission(creation.request_id, creation.outcome)
    logger.info(
        "request=%s order=%s status=queued%s",
        record.id,
        record.reference_order_id,
        _from(record.origin),
    )
    return Submission(record.id, SubmissionOutcome.CREATED, waiting_for_turn=not creation.is_head)


def _from(origin: str | None) -> str:
    return f" from {origin}" if origin else ""


def _usable_key(key: object) -> bool:
    if not isinstance(key, str) or not 1 <= len(key) <= 255:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True
