"""The exception tree for Tango's answers, grouped by what the worker must do about them."""

from __future__ import annotations

from typing import Any

from worker.core.errors import TangoResendError
from worker.tango.timeparse import ParsedInstant


class TangoError(TangoResendError):
    """Raised when Tango (or the way to it) did not answer a call with success."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        i18n_key: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.i18n_key = i18n_key
        self.request_id = request_id
        self.body = body
        # The URL called, without credentials or query (set by the client that called it).
        self.url: str | None = None

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.i18n_key:
            parts.append(f"i18nKey={self.i18n_key}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """What a record keeps of this error (never the raw body: it may hold an email)."""
        kept: dict[str, Any] = {
            "kind": type(self).__name__,
            "message": self.message,
            "status": self.status,
            "i18n_key": self.i18n_key,
            "request_id": self.request_id,
        }
        if self.url is not None:
            kept["url"] = self.url
        return kept


class TangoCooldownError(TangoError):
    """Raised when Tango refuses a resend because the order was resent less than a window ago."""

    def __init__(
        self,
        message: str,
        *,
        last_sent_at: ParsedInstant | None = None,
        tango_now: ParsedInstant | None = None,
        stated_window_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.last_sent_at = last_sent_at
        self.tango_now = tango_now
        # The window Tango's message states ("more than once every {0} seconds"), if it did.
        self.stated_window_seconds = stated_window_seconds


class TangoTransientError(TangoError):
    """Raised for failures worth retrying: network errors, timeouts, 5xx, 429."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        ambiguous: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        # True when the request may have reached Tango and been acted on (a read timeout, a
        # connection dropped after sending): a resend may have happened, so the window holds.
        self.ambiguous = ambiguous


class TangoNotSent(TangoTransientError):
    """Raised when a call was not sent because its time since the gate ran out (a process
    paused or starved between the gate and the send): nothing reached Tango, and nothing
    says Tango is unreachable, so it is retried as any transient failure, never an outage."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ambiguous=False)


class TangoAuthenticationError(TangoError):
    """Raised when Tango rejects our credentials (401), or a token cannot be obtained."""


class TangoPermanentError(TangoError):
    """Raised for refusals that no retry can change (other 4xx, e.g. unknown order)."""
