"""tango-resend: resend Tango reward orders exactly when Tango allows it.

The producer API (`enqueue_resend`, `get_resend`) and the Celery `app` (`celery -A worker`).
"""

from worker.celery_app import app
from worker.producer import (
    EnqueueError,
    NotRetryable,
    RedisUnavailable,
    cancel_resend,
    enqueue_resend,
    get_resend,
    retry_resend,
    submit_resend,
    submit_resend_async,
)
from worker.records import ResendRecord, ResendStatus
from worker.settings import ConfigurationError
from worker.validation import InvalidResendRequest

__all__ = [
    "ConfigurationError",
    "EnqueueError",
    "InvalidResendRequest",
    "NotRetryable",
    "RedisUnavailable",
    "ResendRecord",
    "ResendStatus",
    "app",
    "cancel_resend",
    "enqueue_resend",
    "get_resend",
    "retry_resend",
    "submit_resend",
    "submit_resend_async",
]
