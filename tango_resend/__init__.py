"""The import path for applications: `from tango_resend import enqueue_resend`.

tango-resend installs the top-level packages `worker` and `tasks`; an application module with
either name would shadow them. This package re-exports the public producer API under a name no
application is likely to use. `from worker import ...` keeps working.

Names are imported on first use, as in `worker`: importing this package costs nothing, and a
name's module is loaded only when the name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import worker

if TYPE_CHECKING:
    from worker import (
        Cancellation,
        ConfigurationError,
        EnqueueError,
        InvalidResendRequest,
        NotRetryable,
        RedisUnavailable,
        ResendRecord,
        ResendStatus,
        Submission,
        SubmissionOutcome,
        TangoResendError,
        UnknownRequest,
        cancel_resend,
        cancel_resend_detailed,
        enqueue_resend,
        get_resend,
        resend_finished,
        retry_resend,
        submit_resend,
        submit_resend_async,
        wait_for_outcome,
        wait_for_outcome_async,
    )

# Everything `worker` exports but the Celery app, which is the workers' business.
__all__ = [
    "Cancellation",
    "ConfigurationError",
    "EnqueueError",
    "InvalidResendRequest",
    "NotRetryable",
    "RedisUnavailable",
    "ResendRecord",
    "ResendStatus",
    "Submission",
    "SubmissionOutcome",
    "TangoResendError",
    "UnknownRequest",
    "cancel_resend",
    "cancel_resend_detailed",
    "enqueue_resend",
    "get_resend",
    "resend_finished",
    "retry_resend",
    "submit_resend",
    "submit_resend_async",
    "wait_for_outcome",
    "wait_for_outcome_async",
]


def __getattr__(name: str) -> Any:
    """A public name, from `worker`, on first access."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(worker, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
