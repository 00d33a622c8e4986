"""tango-resend: resend Tango reward orders exactly when Tango allows it.

The producer API (`enqueue_resend`, `get_resend`, ...) and the Celery `app` (`celery -A worker`).

Every name here is imported on first use (PEP 562), so `import worker.resend.decision` or any
other pure module does not build the Celery app: see docs/how-it-works.md, "Architecture".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.core.errors import RedisUnavailable, TangoResendError
    from worker.core.settings import ConfigurationError
    from worker.queueing.app import app
    from worker.resend.cancellation import Cancellation, cancel_resend_detailed
    from worker.resend.finished import resend_finished
    from worker.resend.follow_up import (
        UnknownRequest,
        cancel_resend,
        get_resend,
        wait_for_outcome,
        wait_for_outcome_async,
    )
    from worker.resend.producer import (
        EnqueueError,
        Submission,
        enqueue_resend,
        submit_resend,
        submit_resend_async,
    )
    from worker.resend.retry import NotRetryable, retry_resend
    from worker.resend.validation import InvalidResendRequest
    from worker.state.records import ResendRecord, ResendStatus, SubmissionOutcome

# Public name -> the module that defines it.
_EXPORTS = {
    "Cancellation": "worker.resend.cancellation",
    "ConfigurationError": "worker.core.settings",
    "EnqueueError": "worker.resend.producer",
    "InvalidResendRequest": "worker.resend.validation",
    "NotRetryable": "worker.resend.retry",
    "RedisUnavailable": "worker.core.errors",
    "ResendRecord": "worker.state.records",
    "ResendStatus": "worker.state.records",
    "TangoResendError": "worker.core.errors",
    "app": "worker.queueing.app",
    "Submission": "worker.resend.producer",
    "SubmissionOutcome": "worker.state.records",
    "UnknownRequest": "worker.resend.follow_up",
    "cancel_resend": "worker.resend.follow_up",
    "cancel_resend_detailed": "worker.resend.cancellation",
    "enqueue_resend": "worker.resend.producer",
    "get_resend": "worker.resend.follow_up",
    "resend_finished": "worker.resend.finished",
    "retry_resend": "worker.resend.retry",
    "submit_resend": "worker.resend.producer",
    "submit_resend_async": "worker.resend.producer",
    "wait_for_outcome": "worker.resend.follow_up",
    "wait_for_outcome_async": "worker.resend.follow_up",
}

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
    "app",
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
    """Import a public name's module on first access, then keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
