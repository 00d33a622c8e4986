"""A request became final: the in-process hook, and the event outcome callbacks carry.

Apart from the callbacks' delivery (`callbacks.py`, which needs `requests`), so a producer
that cancels a request fires the hook without installing anything more.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.core.hooks import Hook
from worker.core.times import rfc3339, rfc3339_or_none
from worker.state.records import ResendRecord

logger = logging.getLogger("tango_resend.callbacks")

resend_finished = Hook("resend_finished")
"""Sent in the process that finished a request (worker, or the canceller), with `record=`.

Connect with `@resend_finished.connect` for in-process use; receivers' errors are logged,
never raised into the work. A `Hook` of ours with the connect/send behaviour of the Celery
signal it used to be (`worker/core/hooks.py`), so firing it needs no Celery.
"""


def event_id(record: ResendRecord) -> str:
    """Stable for one outcome: a request reaches a final status once."""
    return f"evt_{record.id}_{record.status.value}"


def event_body(record: ResendRecord) -> dict[str, Any]:
    """The event: ids, status and reason; no recipient contact data."""
    return {
        "id": event_id(record),
        "type": f"resend.{record.status.value}",
        "timestamp": rfc3339(record.updated_at),
        "data": {
            "id": record.id,
            "referenceOrderID": record.reference_order_id,
            "status": record.status.value,
            "attempts": record.attempts,
            "merges": record.merges,
            "created_at": rfc3339(record.created_at),
            "sent_at": rfc3339_or_none(record.sent_at),
            "reason": record.reason,
            "error": record.error,
            "tango_request_ids": record.tango_request_ids,
            "retry_of": record.retry_of,
            # Who asked (worker.resend.origins), who asked for a retry, who cancelled.
            "origin": record.origin,
            "requested_by": record.requested_by,
            "forced": record.forced,
            "cancelled_by": record.cancelled_by,
            "cancelled_at": rfc3339_or_none(record.cancelled_at),
        },
    }


def notify_finished(record: ResendRecord) -> None:
    """Fire the in-process hook; a receiver's failure is logged, not raised."""
    for receiver, result in resend_finished.send(sender=None, record=record):
        if isinstance(result, Exception):
            logger.warning("resend_finished receiver %r failed: %r", receiver, result)
