"""The import path for applications: `from tango_resend import enqueue_resend`.

tango-resend installs the top-level packages `worker` and `tasks`; an application module with
either name would shadow them. This package re-exports the public producer API under a name no
application is likely to use. `from worker import ...` keeps working.
"""

from worker import (
    Cancellation,
    ConfigurationError,
    EnqueueError,
    InvalidResendRequest,
    NotRetryable,
    RedisUnavailable,
    ResendRecord,
    ResendStatus,
    TangoResendError,
    cancel_resend,
    cancel_resend_detailed,
    enqueue_resend,
    get_resend,
    retry_resend,
    submit_resend_async,
)

__all__ = [
    "Cancellation",
    "ConfigurationError",
    "EnqueueError",
    "InvalidResendRequest",
    "NotRetryable",
    "RedisUnavailable",
    "ResendRecord",
    "ResendStatus",
    "TangoResendError",
    "cancel_resend",
    "cancel_resend_detailed",
    "enqueue_resend",
    "get_resend",
    "retry_resend",
    "submit_resend_async",
]
