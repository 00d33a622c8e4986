"""Telling others a request finished: a signed webhook (at least once), and an in-process hook.

When a request reaches `sent`, `failed` or `cancelled`, the script that records it also puts
it in the callback outbox (a sorted set by next attempt), so a callback is owed exactly when
the outcome is stored. The scheduler releases due entries to the `deliver_outcome` task, which
POSTs a Standard-Webhooks-signed event to RESULT_WEBHOOK_URL; a failure re-schedules it with
exponential backoff until RESULT_WEBHOOK_MAX_ATTEMPTS. The event id is stable across retries,
so receivers can drop duplicates.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import requests
from celery.utils.dispatch import Signal
from standardwebhooks.webhooks import Webhook

from worker.records import ResendRecord
from worker.runtime import Runtime

logger = logging.getLogger("tango_resend.callbacks")

resend_finished = Signal(name="resend_finished", providing_args=["record"])
"""Sent in the process that finished a request (worker, or the canceller), with `record=`.

Connect with `@resend_finished.connect` for in-process use; receivers' errors are logged,
never raised into the work.
"""

_BACKOFF_BASE_SECONDS = 2.0
_BACKOFF_MAX_SECONDS = 3600.0


def event_id(record: ResendRecord) -> str:
    """Stable for one outcome: a request reaches a final status once."""
    return f"evt_{record.id}_{record.status.value}"


def event_body(record: ResendRecord) -> dict[str, Any]:
    """The event: ids, status and reason; no recipient contact data."""
    return {
        "id": event_id(record),
        "type": f"resend.{record.status.value}",
        "timestamp": record.updated_at.isoformat(),
        "data": {
            "id": record.id,
            "referenceOrderID": record.reference_order_id,
            "status": record.status.value,
            "attempts": record.attempts,
            "merges": record.merges,
            "created_at": record.created_at.isoformat(),
            "sent_at": record.sent_at.isoformat() if record.sent_at else None,
            "reason": record.reason,
            "error": record.error,
            "tango_request_ids": record.tango_request_ids,
            "retry_of": record.retry_of,
        },
    }


def notify_finished(record: ResendRecord) -> None:
    """Fire the in-process hook; a receiver's failure is logged, not raised."""
    for receiver, result in resend_finished.send(sender=None, record=record):
        if isinstance(result, Exception):
            logger.warning("resend_finished receiver %r failed: %r", receiver, result)


class OutcomeDeliverer:
    """Delivers one owed callback, or schedules its next attempt."""

    def __init__(self, runtime: Runtime, session: requests.Session | None = None) -> None:
        settings = runtime.settings
        assert settings.result_webhook_url and settings.result_webhook_secret
        self._runtime = runtime
        self._url = str(settings.result_webhook_url)
        self._webhook = Webhook(settings.result_webhook_secret.get_secret_value())
        self._session = session or requests.Session()
        self._max_attempts = settings.result_webhook_max_attempts

    def deliver(self, request_id: str) -> str:
        """Returns "delivered", "retrying", "abandoned" or "gone" (record expired)."""
        runtime, keys = self._runtime, self._runtime.keys
        record = runtime.records.get(request_id)
        if record is None or not record.status.is_final:
            runtime.redis.zrem(keys.callbacks_due, request_id)
            return "gone"
        body = json.dumps(event_body(record), separators=(",", ":"))
        message_id = event_id(record)
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._webhook.sign(message_id, now, body),
        }
        try:
            response = self._session.post(
                self._url,
                data=body.encode(),
                headers=headers,
                timeout=(3.05, 10),
                allow_redirects=False,
            )
            delivered = 200 <= response.status_code < 300
            problem = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            delivered, problem = False, type(error).__name__
        if delivered:
            with runtime.redis.pipeline() as pipe:
                pipe.zrem(keys.callbacks_due, request_id)
                pipe.hdel(keys.callback_attempts, request_id)
                pipe.execute()
            runtime.metrics.callback("delivered")
            logger.info("request=%s callback %s delivered", request_id, message_id)
            return "delivered"
        attempts = int(runtime.redis.hincrby(keys.callback_attempts, request_id, 1))
        if attempts >= self._max_attempts:
            with runtime.redis.pipeline() as pipe:
                pipe.zrem(keys.callbacks_due, request_id)
                pipe.hdel(keys.callback_attempts, request_id)
                pipe.execute()
            runtime.metrics.callback("abandoned")
            logger.error(
                "request=%s callback %s abandoned after %d attempts (%s)",
                request_id,
                message_id,
                attempts,
                problem,
            )
            return "abandoned"
        delay = min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
        seconds, micros = runtime.redis.time()
        runtime.redis.zadd(
            keys.callbacks_due, {request_id: int(seconds) + int(micros) / 1e6 + delay}
        )
        runtime.metrics.callback("retried")
        logger.warning(
            "request=%s callback %s failed (%s); attempt %d, next in %.0fs",
            request_id,
            message_id,
            problem,
            attempts,
            delay,
        )
        return "retrying"
