"""Masking of recipients' contact data wherever a log line could carry it."""

from __future__ import annotations

import logging
import re

# Every character RFC 5322 allows in a local part; the apostrophe may not start one, so that a
# quoted 'jane@example.com' still masks as j***.
_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
_EMAIL = re.compile(
    r"(?<![\w.!#$%&*+/=?^`{|}~-])([\w!#$%&*+/=?^`{|}~-])" + _LOCAL + r"*@([\w-]+(?:\.[\w-]+)+)"
)
_PHONE = re.compile(r"\+(\d)\d{3,10}(\d{4})\b")


def mask_email(email: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", email)


def mask_phone(phone: str) -> str:
    """`+14155550123` -> `+1******0123` (country digit and last four kept)."""
    return _PHONE.sub(lambda m: f"+{m.group(1)}{'*' * (len(m.group(0)) - 6)}{m.group(2)}", phone)


def redact(text: str) -> str:
    """Mask every email address and E.164 phone number in free text."""
    return mask_phone(mask_email(text))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with contact data masked, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        # Tracebacks carry exception text, which may quote an address too.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
