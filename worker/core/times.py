"""The one way tango-resend writes a time: RFC 3339 in UTC with `Z`, microseconds when there
are any (`2026-11-25T23:13:00.123456Z`). The CLI, the REST API (pydantic writes UTC the same
way), the outcome callbacks, JSON logs and the doctor all use it."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC, ending in `Z`; a naive datetime is taken as UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat() + "Z"


def rfc3339_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)
