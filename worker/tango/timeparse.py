"""Lenient parsing of the instants Tango puts in its answers.

Tango's cooldown message is rendered by Java `MessageFormat`, so "Last sent at {1}" may hold an
ISO-8601 string (with or without zone or fraction), epoch seconds or milliseconds, or a
`java.util.Date` default rendering. Each parsed instant carries its resolution: the true moment
lies in [at, at + resolution), and window arithmetic must assume the latest of those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?P<fraction>[.,]\d+)?"
    # A zone we cannot place must not be read as UTC: the lookahead refuses a partial match.
    r"\s*(?P<zone>Z|z|[A-Z]{3,5}|[+-]\d{2}(?::?\d{2})?)?(?![\w:+-])"
)
_EPOCH = re.compile(r"^\d{9,13}(?:\.\d+)?$")
# java.util.Date.toString(): "Mon Mar 25 22:46:39 UTC 2024"
_JAVA_DATE = re.compile(
    r"(?:[A-Z][a-z]{2} )?(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2}) (?P<time>\d{2}:\d{2}:\d{2}) "
    r"(?P<zone>[A-Z]{2,5}|[+-]\d{4}) (?P<year>\d{4})"
)
# java.text.MessageFormat's default for a Date: DateFormat.SHORT date and time, US English
# ("12/5/26, 11:18 PM"; Java 8 without the comma, Java 20+ with a narrow no-break space).
_JAVA_SHORT = re.compile(
    r"(?<![\d/])(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{2}),?[ \u00a0\u202f]"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})[ \u00a0\u202f]?(?P<half>[AaPp][Mm])(?![\w])"
)
_LAST_SENT = re.compile(r"last\s+sent\s+at\s*:?\s*(?P<value>.+?)\s*\.?\s*$", re.IGNORECASE)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Zones a Java Date may print that we can place; anything else is not trusted.
_ZONE_OFFSETS = {
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "EST": -5,
    "EDT": -4,
    "CST": -6,
    "CDT": -5,
    "MST": -7,
    "MDT": -6,
    "PST": -8,
    "PDT": -7,
}
# Epoch values are accepted only inside this range, so that a stray number is not a date.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ParsedInstant:
    """An instant read from Tango, with how coarse the text it came from was."""

    at: datetime
    resolution: timedelta

    @property
    def latest(self) -> datetime:
        """The latest moment the text could have meant."""
        return self.at + self.resolution


def parse_tango_instant(value: object) -> ParsedInstant | None:
    """Parse an ISO-8601 string, epoch seconds/milliseconds or a Java Date rendering.

    Args:
        value: the raw value from a JSON body or message; anything else gives None.

    Returns:
        The instant in UTC with its resolution, or None when it cannot be read safely.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not -1e15 < value < 1e15:  # also keeps str() of a gigantic int from raising
            return None
        return _from_epoch(str(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _EPOCH.match(text):
        return _from_epoch(text)
    return _from_iso(text) or _from_java_date(text) or _from_java_short(text)


def extract_last_sent(message: object) -> ParsedInstant | None:
    """Find the instant after "Last sent at" in a Tango cooldown message."""
    if not isinstance(message, str):
        return None
    match = _LAST_SENT.search(message)
    if not match:
        return None
    return parse_tango_instant(match.group("value"))


def parse_http_date(value: object) -> ParsedInstant | None:
    """Parse an HTTP `Date` header (whole seconds)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _checked(parsed.astimezone(UTC), timedelta(seconds=1))


def _from_epoch(text: str) -> ParsedInstant | None:
    whole = text.split(".")[0]
    number = float(text)
    if len(whole) >= 12:  # milliseconds: 13 digits until the year 2286
        number /= 1000
        resolution = timedelta(milliseconds=1) if "." not in text else timedelta(microseconds=1)
    else:
        resolution = timedelta(seconds=1) if "." not in text else timedelta(microseconds=1)
    try:
        at = datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return _checked(at, resolution)


def _from_iso(text: str) -> ParsedInstant | None:
    match = _ISO.search(text)
    if not match:
        return None
    clock = match.group("time")
    fraction = match.group("fraction")
    if fraction:
        digits = fraction[1:]
        resolution = timedelta(seconds=10 ** -min(len(digits), 6))
    else:
        resolution = timedelta(seconds=1 if clock.count(":") == 2 else 60)
    if clock.count(":") == 1:
        clock += ":00"
    micro = (fraction[1:] + "000000")[:6] if fraction else "000000"
    try:
        naive = datetime.fromisoformat(f"{match.group('date')}T{clock}.{micro}")
    except ValueError:
        return None
    offset = _zone_offset(match.group("zone"))
    if offset is None:
        return None
    return _checked((naive - offset).replace(tzinfo=UTC), resolution)


def _from_java_date(text: str) -> ParsedInstant | None:
    match = _JAVA_DATE.search(text)
    if not match or match.group("month") not in _MONTHS:
        return None
    month = _MONTHS.index(match.group("month")) + 1
    try:
        naive = datetime.fromisoformat(
            f"{match.group('year')}-{month:02d}-{int(match.group('day')):02d}T{match.group('time')}"
        )
    except ValueError:
        return None
    offset = _zone_offset(match.group("zone"))
    if offset is None:
        return None
    return _checked((naive - offset).replace(tzinfo=UTC), timedelta(seconds=1))


def _from_java_short(text: str) -> ParsedInstant | None:
    """MessageFormat's default rendering: minute precision, and no zone, read as UTC like
    any zoneless time from Tango (a Tango whose JVM runs elsewhere reads hours off: its times
    then prove nothing, and a wrong reading only ever lengthens a wait; docs/guarantees.md)."""
    match = _JAVA_SHORT.search(text)
    if not match:
        return None
    hour = int(match.group("hour"))
    if not 1 <= hour <= 12:
        return None
    hour = hour % 12 + (12 if match.group("half").upper() == "PM" else 0)
    try:
        at = datetime(
            2000 + int(match.group("year")),
            int(match.group("month")),
            int(match.group("day")),
            hour,
            int(match.group("minute")),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return _checked(at, timedelta(minutes=1))


def _zone_offset(zone: str | None) -> timedelta | None:
    """Offset east of UTC. A missing zone is read as UTC, which is what Tango's API speaks."""
    if zone is None:
        return timedelta(0)
    if zone in _ZONE_OFFSETS:
        return timedelta(hours=_ZONE_OFFSETS[zone])
    if zone.upper() == "Z":
        return timedelta(0)
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 14 or minutes > 59:
            return None
        sign = 1 if zone[0] == "+" else -1
        return sign * timedelta(hours=hours, minutes=minutes)
    return None


def _checked(at: datetime, resolution: timedelta) -> ParsedInstant | None:
    if not _EARLIEST <= at < _LATEST:
        return None
    return ParsedInstant(at=at, resolution=resolution)
