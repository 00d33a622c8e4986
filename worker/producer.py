"""The producer API: validate a resend, store its record, queue its task."""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from worker.callbacks import notify_finished
from worker.celery_app import RESEND_TASK_NAME, app
from worker.records import PROMOTE_MARGIN_SECONDS, ResendRecord, ResendStatus
from worker.runtime import current_runtime
from worker.validation import InvalidResendRequest, validate_resend

logger = logging.getLogger("tango_resend.producer")


class EnqueueError(RuntimeError):
    """Raised when a valid request could not be stored or queued (Redis or broker down)."""


def enqueue_resend(
    reference_order_id: str,
    *,
    new_email: str | None = None,
    new_mobile: str | None = None,
    new_etid: str | None = None,
    new_delivery_method: str | None = None,
    idempotency_key: str | None = None,
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

    Raises:
        InvalidResendRequest: naming every bad field; nothing is stored or queued.
        EnqueueError: Redis or the broker could not take the request; nothing is stored.
        ConfigurationError: a setting is missing or invalid.
    """
    fields = {
        "referenceOrderID": reference_order_id,
        "newEmail": new_email,
        "newMobile": new_mobile,
        "newEtid": new_etid,
        "newDeliveryMethod": new_delivery_method,
    }
    present = {name: value for name, value in fields.items() if value is not None}
    return submit_resend(present, idempotency_key=idempotency_key).request_id


@dataclass(frozen=True)
class Submission:
    """What became of a submitted request.

    `outcome` is "created", "idempotent" (its idempotency key was seen before) or "merged"
    (an identical request for the same order was still pending and now stands for it).
    """

    request_id: str
    outcome: str

    @property
    def created(self) -> bool:
        return self.outcome == "created"


def submit_resend(
    fields: dict[str, Any], *, idempotency_key: str | None = None, retry_of: str | None = None
) -> Submission:
    """Validate a request given in Tango's field names, store it and queue its task.

    The form webhooks and files arrive in; `enqueue_resend` is the keyword-argument front.

    Raises:
        InvalidResendRequest: naming every bad field; nothing is stored or queued.
        EnqueueError: Redis or the broker could not take the request; nothing is stored.
    """
    request = validate_resend(fields)
    if idempotency_key is not None and not _usable_key(idempotency_key):
        raise InvalidResendRequest({"idempotency_key": "must be text of 1 to 255 characters"})

    runtime = current_runtime()
    settings = runtime.settings
    try:
        now = runtime.clock.now()
        record = ResendRecord(
            id=str(uuid.uuid4()),
            reference_order_id=request.reference_order_id,
            request=request.tango_body(),
            status=ResendStatus.QUEUED,
            created_at=now,
            updated_at=now,
            retry_of=retry_of,
        )
        creation = runtime.records.create(
            record,
            idempotency_key,
            settings.resend_idempotency_ttl_seconds,
            lease_seconds=settings.lost_task_grace_seconds,
        )
    except redis.RedisError as error:
        raise EnqueueError(f"could not store the request: {error}") from error
    if creation.outcome != "created":
        runtime.metrics.request("coalesced")
        logger.info("request=%s stands for a new %s request", creation.request_id, creation.outcome)
        return Submission(creation.request_id, creation.outcome)
    if creation.is_head:
        # Only the first waiting request of an order needs a task now; the others are
        # released in order as the ones ahead of them finish (worker/record_scripts.py).
        try:
            app.send_task(
                RESEND_TASK_NAME,
                args=[record.id],
                task_id=record.id,
                queue=settings.resend_queue,
            )
        except Exception as error:
            with contextlib.suppress(redis.RedisError):
                # If even this fails, the scheduler's lease releases it later: never lost.
                runtime.records.undo_create(record, idempotency_key)
            raise EnqueueError(f"could not queue the request: {error}") from error
    runtime.metrics.request("accepted")
    logger.info("request=%s order=%s status=queued", record.id, record.reference_order_id)
    return Submission(record.id, "created")


def _usable_key(key: object) -> bool:
    if not isinstance(key, str) or not 1 <= len(key) <= 255:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


class NotRetryable(ValueError):
    """Raised when `retry_resend` is asked to retry a request that has not failed."""


def retry_resend(request_id: str) -> Submission:
    """Queue a failed request again, as a new request linked to it (`retry_of`).

    Raises:
        NotRetryable: the request is unknown, or did not fail.
    """
    old = current_runtime().records.get(request_id)
    if old is None:
        raise NotRetryable(f"no request {request_id!r} (unknown or expired)")
    if old.status is not ResendStatus.FAILED:
        raise NotRetryable(f"request {request_id} is {old.status.value}, not failed")
    fields = {"referenceOrderID": old.reference_order_id, **old.request}
    return submit_resend(fields, retry_of=old.id)


def cancel_resend(request_id: str) -> str:
    """Cancel a queued or deferred request before it is sent.

    Returns:
        "cancelled"; or "in_flight" when its call to Tango is under way (too late to stop);
        or the final status it already had ("sent", "failed", "cancelled"); or "unknown".
    """
    runtime = current_runtime()
    result, newly_cancelled = runtime.records.try_cancel(request_id, PROMOTE_MARGIN_SECONDS)
    logger.info("request=%s cancel: %s", request_id, result)
    if newly_cancelled:
        runtime.metrics.request("cancelled")
        record = runtime.records.get(request_id)
        if record is not None:
            notify_finished(record)
    return result


def get_resend(request_id: str) -> ResendRecord | None:
    """The record of a request, or None when unknown or expired."""
    return current_runtime().records.get(request_id)
