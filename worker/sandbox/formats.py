"""Renderings of times and numbers the way Tango's Java stack writes them.

Times inside the sandbox are whole milliseconds since the epoch: Tango stores a
`java.util.Date`, so its cooldown check and every timestamp it prints have
millisecond precision, and a worker that parses them exactly must not be
penalised by sub-millisecond rounding on our side.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime, timedelta

LAST_SENT_FORMATS = (
    "iso",
    "iso-seconds",
    "iso-seconds-offset",
    "iso-minutes",
    "epoch-ms",
    "java",
    "java-messageformat",
    "garbage",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

# Fixed English names: Java's Date.toString ignores the locale, strftime does not.
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def to_ms(epoch_seconds: float) -> int:
    """Truncates epoch seconds to whole epoch milliseconds.

    Args:
        epoch_seconds: Seconds since the Unix epoch.

    Returns:
        Milliseconds since the epoch, rounded toward minus infinity.
    """
    return math.floor(epoch_seconds * 1000)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=UTC)


def iso_ms(ms: int) -> str:
    """Renders epoch milliseconds like Tango's JSON timestamps.

    Args:
        ms: Milliseconds since the epoch.

    Returns:
        For example ``2024-03-25T22:46:39.922Z``.
    """
    return f"{_utc(ms):%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def iso_seconds(ms: int) -> str:
    """Renders epoch milliseconds as ISO-8601 truncated to whole seconds.

    Args:
        ms: Milliseconds since the epoch.

    Returns:
        For example ``2024-03-25T22:46:39Z``.
    """
    return f"{_utc(ms):%Y-%m-%dT%H:%M:%S}Z"


def java_date(ms: int) -> str:
    """Renders epoch milliseconds like Java's ``Date.toString()`` in a UTC JVM.

    Args:
        ms: Milliseconds since the epoch.

    Returns:
        For example ``Mon Mar 25 22:46:39 UTC 2024``.
    """
    moment = _utc(ms)
    day = _DAY_NAMES[moment.weekday()]
    month = _MONTH_NAMES[moment.month - 1]
    return f"{day} {month} {moment.day:02d} {moment:%H:%M:%S} UTC {moment.year}"


def java_messageformat(ms: int) -> str:
    """Renders epoch milliseconds as Java's ``MessageFormat`` renders a ``Date`` argument with
    no format type: ``DateFormat.SHORT`` date and time, US English, in a UTC JVM. Minute
    precision, and no zone.

    Args:
        ms: Milliseconds since the epoch.

    Returns:
        For example ``12/5/26, 11:18 PM``.
    """
    moment = _utc(ms)
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year % 100:02d}, {hour}:{moment.minute:02d} {half}"


def http_date(epoch_seconds: float) -> str:
    """Renders an RFC 7231 ``Date`` header value.

    Args:
        epoch_seconds: Seconds since the Unix epoch.

    Returns:
        For example ``Mon, 25 Mar 2024 22:46:39 GMT``.
    """
    return email.utils.formatdate(epoch_seconds, usegmt=True)


def render_last_sent(ms: int, fmt: str) -> str:
    """Renders a last-resend time the way one of the possible Tango builds might.

    Tango's message catalogue does not pin the format of ``{1}`` in 403.005, so
    the sandbox can emit each plausible rendering to prove the worker copes.

    Args:
        ms: Milliseconds since the epoch of the last resend.
        fmt: One of ``LAST_SENT_FORMATS``.

    Returns:
        The rendered time.

    Raises:
        ValueError: If ``fmt`` is not a known format.
    """
    if fmt == "iso":
        return iso_ms(ms)
    if fmt == "iso-seconds":
        return iso_seconds(ms)
    if fmt == "iso-seconds-offset":  # e.g. 2026-12-05T23:18:21+00:00
        return f"{_utc(ms):%Y-%m-%dT%H:%M:%S}+00:00"
    if fmt == "iso-minutes":  # minute precision: proves nothing about a recent resend
        return f"{_utc(ms):%Y-%m-%dT%H:%M}Z"
    if fmt == "epoch-ms":
        return str(ms)
    if fmt == "java":
        return java_date(ms)
    if fmt == "java-messageformat":  # the catalogue's `{1}` with Java's defaults: minutes
        return java_messageformat(ms)
    if fmt == "garbage":
        return "sometime recently"
    raise ValueError(f"unknown last_sent_format {fmt!r}; expected one of {LAST_SENT_FORMATS}")


def render_seconds(value: float) -> str:
    """Renders a number of seconds without a trailing ``.0`` when it is whole.

    Args:
        value: A number of seconds.

    Returns:
        ``"30"`` for 30.0, ``"1.5"`` for 1.5.
    """
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def parse_rfc3339_ms(text: str) -> int:
    """Parses an RFC 3339 / ISO-8601 timestamp into epoch milliseconds.

    A timestamp without a zone is taken as UTC, as Tango's servers run in UTC.

    Args:
        text: For example ``2024-03-25T22:46:39.922Z`` or ``2024-03-25``.

    Returns:
        Milliseconds since the epoch.

    Raises:
        ValueError: If the text is not a timestamp.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Exact integer arithmetic: float seconds * 1000 can land on ...921.9999.
    return (moment - _EPOCH) // _ONE_MS
