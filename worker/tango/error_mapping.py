"""The one place where Tango's HTTP answers and network failures become exceptions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from worker.state.outage import OutageReason
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoCooldownError,
    TangoError,
    TangoNotSent,
    TangoPermanentError,
    TangoTransientError,
)
from worker.tango.timeparse import extract_last_sent, parse_http_date, parse_tango_instant

COOLDOWN_I18N_KEY = "403.005"
_STATED_WINDOW = re.compile(r"more than once every\s+(\d+(?:\.\d+)?)\s+seconds?", re.IGNORECASE)
_MAX_STATED_WINDOW_SECONDS = 86400.0
_LAST_SENT_MARKER = "last sent at"
# Statuses that say nothing of whether Tango acted behind a gateway, so the window is held:
# 504, the gateway gave up waiting for Tango's answer; 502, the gateway got no valid answer
# (Tango's process died or closed the connection mid-answer, often after acting). 503 is
# not among them: it is what a gateway with no healthy backend, a maintenance page or load
# shedding answers, all before Tango acts. Should a 503 follow a resend anyway (some proxies
# answer 503 to an upstream reset), the cost is bounded: the retry meets Tango's cooldown
# (403.005) once and waits out Tango's window, never a resend inside it; holding a window for
# every 503 instead would delay every order by a window per refusal during an outage.
_AMBIGUOUS = frozenset({502, 504})
# Bounds what a hostile or broken Retry-After header can make us wait.
_MAX_RETRY_AFTER_SECONDS = 3600.0


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else (HTML pages, garbage, lists)."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def error_for_response(
    status: int, headers: Mapping[str, str], text: str, reason: str = ""
) -> TangoError | None:
    """Map one HTTP answer to the exception it means, or None for a 2xx.

    Args:
        status: the HTTP status code.
        headers: the response headers (case-insensitive mapping).
        text: the response body as text.
        reason: the HTTP reason phrase, used when the body says nothing.
    """
    if 200 <= status < 300:
        return None
    body = parse_json_object(text)
    i18n_key, message = _key_and_message(body)
    if not message:
        kind = "JSON" if body is not None else f"non-JSON ({headers.get('Content-Type', '?')})"
        message = f"HTTP {status} {reason}".strip() + f" with a {kind} body"
    common: dict[str, Any] = {
        "status": status,
        "i18n_key": i18n_key,
        "request_id": _request_id(body, headers),
        "body": body,
    }
    if i18n_key == COOLDOWN_I18N_KEY or _LAST_SENT_MARKER in message.lower():
        tango_now = parse_tango_instant(body.get("timestamp")) if body else None
        return TangoCooldownError(
            message,
            last_sent_at=extract_last_sent(message),
            tango_now=tango_now or parse_http_date(headers.get("Date")),
            stated_window_seconds=stated_window_seconds(message),
            **common,
        )
    if status == 401:
        return TangoAuthenticationError(message, **common)
    if status in (408, 429) or status >= 500:
        return TangoTransientError(
            message, retry_after=_retry_after(headers), ambiguous=status in _AMBIGUOUS, **common
        )
    return TangoPermanentError(message, **common)


def stated_window_seconds(message: str) -> float | None:
    """The window a cooldown message states ("Cannot send more than once every 30 seconds"),
    or None when it states none a sane reader would believe (0, or over a day)."""
    found = _STATED_WINDOW.search(message)
    if found is None:
        return None
    seconds = float(found.group(1))
    return seconds if 0 < seconds <= _MAX_STATED_WINDOW_SECONDS else None


def error_for_exception(error: requests.RequestException) -> TangoTransientError:
    """Map a failure to get any answer at all; `ambiguous` when Tango may have acted.

    A refused connection, a failed DNS lookup, a connect timeout and a failed TLS handshake
    all happen before a byte of the request is sent: never ambiguous."""
    never_sent = isinstance(
        error, requests.ConnectTimeout | requests.exceptions.SSLError
    ) or _failed_to_connect(error)
    return TangoTransientError(
        f"{type(error).__name__}: no answer from Tango ({_cause(error)})",
        ambiguous=not never_sent,
    )


class NeverReached(StrEnum):
    """Why a call provably never reached Tango's resend logic: not ambiguous, not a failure
    of the request. Such calls are retried with capped backoff until the request's patience
    (TANGO_OUTAGE_PATIENCE_SECONDS) runs out."""

    UNREACHABLE = "unreachable"  # refused, DNS, TLS handshake, connect timeout
    CREDENTIALS_REFUSED = "credentials_refused"  # 401, or a 403 on authentication
    BUSY = "busy"  # 503 (nothing behind the gateway) or 429 (too fast)

    @property
    def outage(self) -> OutageReason | None:
        """The fleet-wide outage this means, if the whole fleet shares it (503 and 429 are
        one request's answer, and the rate limiter already spreads 429s)."""
        if self is NeverReached.UNREACHABLE:
            return OutageReason.UNREACHABLE
        if self is NeverReached.CREDENTIALS_REFUSED:
            return OutageReason.CREDENTIALS_REFUSED
        return None


# A 403 that is about who we are, not about the order (403.003, 403.005 and other order
# refusals are permanent or a cooldown).
_AUTHENTICATION_WORDS = re.compile(
    r"authenticat|credential|unauthori[sz]ed|not authori[sz]ed|invalid token|access denied",
    re.IGNORECASE,
)


def never_reached(error: TangoError) -> NeverReached | None:
    """Which kind of never-reached call `error` is, or None (answered, ambiguous, or a
    refusal of the request itself)."""
    if isinstance(error, TangoCooldownError | TangoNotSent):
        return None
    if isinstance(error, TangoAuthenticationError):
        return NeverReached.CREDENTIALS_REFUSED
    if error.status == 403 and (
        (error.i18n_key or "").startswith("401") or _AUTHENTICATION_WORDS.search(error.message)
    ):
        return NeverReached.CREDENTIALS_REFUSED
    if isinstance(error, TangoTransientError):
        if error.status in (429, 503):
            return NeverReached.BUSY
        if error.status is None and not error.ambiguous:
            return NeverReached.UNREACHABLE
    return None


def shown_url(url: str) -> str:
    """A URL for logs, records and /healthz: scheme, host, port and path, never userinfo
    (credentials) or a query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _cause(error: requests.RequestException) -> str:
    """The innermost reason of a requests failure in a few words, without the URL (it may
    carry credentials) and without the connection object's repr."""
    cause: object = error.args[0] if error.args else error
    reason = getattr(cause, "reason", None) or cause
    text = str(reason)
    # urllib3 renders "<urllib3.connection.HTTPConnection object at 0x..>: Failed to ...".
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    text = re.sub(r"\(Caused by .*\)$", "", text)
    text = re.sub(r"https?://\S+", "<url>", text)
    return (text.strip() or type(reason).__name__)[:200]


def _failed_to_connect(error: requests.RequestException) -> bool:
    if not isinstance(error, requests.ConnectionError):
        return False
    cause: object = error.args[0] if error.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _key_and_message(body: dict[str, Any] | None) -> tuple[str | None, str]:
    if body is None:
        return None, ""
    key = body.get("i18nKey")
    message = body.get("message")
    details = body.get("errors")
    if isinstance(details, list) and details:
        first = details[0] if isinstance(details[0], dict) else {}
        key = key or first.get("i18nKey")
        if not message:
            parts = [
                f"{item.get('path', '?')}: {item.get('message', '?')}"
                for item in details
                if isinstance(item, dict)
            ]
            message = "; ".join(parts)
    return (str(key) if key else None), (str(message) if message else "")


def _request_id(body: dict[str, Any] | None, headers: Mapping[str, str]) -> str | None:
    from_body = body.get("requestId") if body else None
    value = from_body or headers.get("X-REQUEST-ID") or headers.get("X-Request-Id")
    return str(value) if value else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` header given as seconds or as an HTTP date."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = parse_http_date(value)
        if when is None:
            return None
        now = parse_http_date(headers.get("Date"))
        reference = now.at if now else datetime.now(UTC)
        seconds = (when.at - reference).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)
