"""Requests a page at a time, newest first, with a cursor that stays right while new requests
arrive: the REST API's `GET /resends` and the console's lists.

A cursor names the last request a page showed by its place in the time index (creation time,
then id), so the next page starts just after it whatever was created in between. Pages never
read more than `MAX_SCANNED` entries: a filter that matches rarely returns a short page and a
cursor, rather than a slow answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from worker.core.errors import TangoResendError
from worker.state.queries import shown_records
from worker.state.records import ResendRecord, ResendStatus

if TYPE_CHECKING:
    from worker.runtime import Runtime  # a type only: the runtime imports state, not back

MAX_SCANNED = 2000
_BATCH = 200
_DURATION = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class InvalidCursor(TangoResendError, ValueError):
    """Raised when a cursor was not made by `encode_cursor`."""


@dataclass(frozen=True)
class Position:
    """A place in a time index: a request's creation time (its score) and id."""

    score: float
    request_id: str


@dataclass(frozen=True)
class Page:
    records: list[ResendRecord]
    next_cursor: str | None


def encode_cursor(position: Position) -> str:
    raw = json.dumps([position.score, position.request_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names.

    Raises:
        InvalidCursor: the text is not a cursor this module made.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, request_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise InvalidCursor(cursor) from None
    if (
        not isinstance(score, int | float)
        or isinstance(score, bool)
        or not math.isfinite(score)
        or not isinstance(request_id, str)
        or len(request_id) > 64
    ):
        raise InvalidCursor(cursor)
    return Position(float(score), request_id)


def parse_since(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, `1h30m`, `1w`, as the CLI's `--since` takes them.

    Raises:
        ValueError: not such a duration.
    """
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise ValueError("must be a duration like 90s, 15m, 2h, 1d or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds > 100 * 365 * 86400:
        raise ValueError("must be at most 100 years")
    return timedelta(seconds=seconds)


def page_requests(
    runtime: Runtime,
    *,
    order: str | None = None,
    status: ResendStatus | None = None,
    since: timedelta | None = None,
    limit: int = 50,
    after: Position | None = None,
) -> Page:
    """Up to `limit` requests newest first, after `after`, filtered (an unfinished `status`
    as shown: `shown_records`)."""
    low = "-inf" if since is None else repr((runtime.clock.now() - since).timestamp())
    found: list[ResendRecord] = []
    position, scanned = after, 0
    while len(found) < limit and scanned < MAX_SCANNED:
        if order is None:
            entries, exhausted = _entries_after(
                runtime, runtime.keys.requests_by_time, low, position
            )
        else:
            entries, exhausted = _order_entries_after(runtime, order, float(low), position), True
        fetched = runtime.records.get_many(_ids(entries))
        if status is not None and not status.is_final:
            # Unfinished states are filtered as every interface shows them ("States").
            fetched = shown_records(runtime, fetched)
        records = {record.id: record for record in fetched}
        taken = 0
        for entry in entries:
            position, scanned, taken = entry, scanned + 1, taken + 1
            record = records.get(entry.request_id)
            if record is not None and (status is None or record.status is status):
                found.append(record)
            if len(found) == limit or scanned >= MAX_SCANNED:
                break
        if exhausted and taken == len(entries):
            return Page(found, None)  # nothing left after this position
    return Page(found, _cursor(position))


def _ids(entries: list[Position]) -> list[str]:
    return [entry.request_id for entry in entries]


def _cursor(position: Position | None) -> str | None:
    return None if position is None else encode_cursor(position)


def _entries_after(
    runtime: Runtime, key: str, low: str, after: Position | None
) -> tuple[list[Position], bool]:
    """The next entries of the index (newest first) after `after`, and whether they are the
    last ones. Entries of equal time come in descending id order."""
    high = "+inf" if after is None else repr(after.score)
    count = _BATCH
    while True:
        rows = cast(
            list[tuple[str, float]],
            runtime.redis.zrevrangebyscore(key, high, low, start=0, num=count, withscores=True),
        )
        entries = [Position(float(score), str(member)) for member, score in rows]
        if after is not None:
            entries = [entry for entry in entries if _is_after(entry, after)]
        if entries or len(rows) < count:
            return entries, len(rows) < count
        count *= 2  # a page's worth of requests created in the same microsecond: look further


def _order_entries_after(
    runtime: Runtime, order: str, low: float, after: Position | None
) -> list[Position]:
    """An order's requests (a handful: one resend per window) as positions in the time index,
    newest first, from `low` on and after `after`."""
    entries = sorted(
        (Position(at, request_id) for request_id, at in runtime.records.order_history_times(order)),
        key=lambda entry: (entry.score, entry.request_id),
        reverse=True,
    )
    return [
        entry
        for entry in entries
        if entry.score >= low and (after is None or _is_after(entry, after))
    ]


def _is_after(entry: Position, after: Position) -> bool:
    if entry.score != after.score:
        return entry.score < after.score
    return entry.request_id < after.request_id
