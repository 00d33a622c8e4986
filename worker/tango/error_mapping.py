"""The one place where Tango's HTTP answers and network failures become exceptions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from worker.tango.errors import (
    TangoAuthenticationError,
    TangoCooldownError,
    TangoError,
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
    """Map a failure to get any answer at all; `ambiguous` when Tango may have acted."""
    never_sent = isinstance(error, requests.ConnectTimeout) or _failed_to_connect(error)
    return TangoTransientError(
        f"{type(error).__name__}: no answer from Tango", ambiguous=not never_sent
    )


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
