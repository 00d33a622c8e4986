"""Masking of recipients' contact data wherever a log line could carry it, and (the same
filter, on every handler) control characters escaped in every field of a record."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from worker.core.log_escape import escape_controls, escape_multiline

# Every character RFC 5322 allows in a local part; the apostrophe may not start one, so that a
# quoted 'jane@example.com' still masks as j***.
_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
_EMAIL = re.compile(
    r"(?<![\w.!#$%&*+/=?^`{|}~-])([\w!#$%&*+/=?^`{|}~-])" + _LOCAL + r"*@([\w-]+(?:\.[\w-]+)+)"
)
_PHONE = re.compile(r"\+(\d)\d{3,10}(\d{4})\b")
# The user and password of a URL in free text (`https://user:pass@host`), whoever wrote it.
_URL_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@?#]+@")


def mask_email(email: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", email)


def mask_phone(phone: str) -> str:
    """`+14155550123` -> `+1******0123` (country digit and last four kept)."""
    return _PHONE.sub(lambda m: f"+{m.group(1)}{'*' * (len(m.group(0)) - 6)}{m.group(2)}", phone)


def redact(text: str) -> str:
    """Mask every email address and E.164 phone number in free text, and the user and
    password of every URL."""
    text = mask_phone(mask_email(text))
    if "://" in text:  # after the emails: `user:pass@host` reads as one to them
        text = _URL_USERINFO.sub(r"\1***@", text)
    return text


def url_without_secrets(url: str) -> str:
    """A URL fit to show: its user and password, and its query (which may hold a token),
    each replaced by `***`; scheme, host, port and path kept."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL at all: show nothing of it
        return "***"
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    auth = "***@" if "@" in parts.netloc else ""
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{auth}{host}{port}{parts.path}{query}"


# Attributes of every LogRecord that are not text a caller passed (or are handled apart).
_NOT_FIELDS = frozenset({"msg", "args", "exc_info", "exc_text", "stack_info", "message"})


class RedactingFilter(logging.Filter):
    """Rewrites each record with contact data masked and control characters escaped in every
    field (worker/core/log_escape.py), whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = redact(message)
        if not safe.isprintable():  # (a C-speed test: most lines need no escaping)
            safe = escape_controls(safe)
        if safe != message:
            record.msg, record.args = safe, None
        # The logger's name, the process's, and fields passed with `extra=`.
        for name, value in vars(record).items():
            if name not in _NOT_FIELDS and isinstance(value, str) and not value.isprintable():
                setattr(record, name, escape_controls(value))
        # Tracebacks carry exception text, which may quote an address too.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        # A record passes one such filter per handler: its tracebacks are indented once.
        if not getattr(record, "_tracebacks_escaped", False):
            if record.exc_text:
                record.exc_text = escape_multiline(redact(record.exc_text))
            if record.stack_info:
                record.stack_info = escape_multiline(redact(record.stack_info))
            record._tracebacks_escaped = True
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
