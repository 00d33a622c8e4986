"""Log output: readable text by default, one JSON object per line with LOG_FORMAT=json.

Either way every handler masks recipients' emails and phone numbers (worker.core.redaction), and
state-change lines carry request id, order id, status, attempt and Tango's request id as
fields of their own.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from worker.core.redaction import install_redaction, redact
from worker.core.times import rfc3339

# Fields that state-change lines pass with `extra=` and that JSON output keeps as keys.
STATE_FIELDS = ("request_id", "order_id", "status", "attempt", "tango_request_id", "reason")
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, state fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": rfc3339(datetime.fromtimestamp(record.created, tz=UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in STATE_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_handlers(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of `logger` masking, and the JSON formatter when asked for."""
    install_redaction(logger)
    if log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())


def uvicorn_log_config(log_format: str, level: str) -> dict[str, Any]:
    """logging.config dict for `tango-resend web`: uvicorn's loggers and ours, masked."""
    formatter: dict[str, Any] = (
        {"()": "worker.core.logging_setup.JsonFormatter"}
        if log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "worker.core.redaction.RedactingFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level.upper(), "propagate": True},
        },
    }
