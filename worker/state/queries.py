"""Read-only questions about requests, for the CLI and the web API."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from worker.core.errors import TangoResendError
from worker.state.records import ResendRecord, ResendStatus

if TYPE_CHECKING:
    from worker.runtime import Runtime  # a type only: the runtime imports state, not back

_PAGE = 200

MIN_PREFIX_LENGTH = 8
_ID_TEXT = re.compile(r"^[0-9a-fA-F-]+$")  # what a request id (a UUID) or its prefix may hold
WAITING_FOR_TURN = "waiting for an earlier request of the same order"
CALLING = "its call to Tango is under way"


class AmbiguousRequestId(TangoResendError, ValueError):
    """Raised when an id prefix matches more than one request."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        shown = ", ".join(sorted(matches)[:5]) + (", ..." if len(matches) > 5 else "")
        super().__init__(f"{prefix!r} matches {len(matches)} requests ({shown}): give more of it")
        self.matches = matches


def resolve_request_id(runtime: Runtime, text: str) -> str | None:
    """The full id of the request `text` names: a whole id, or a unique prefix of at least
    8 characters (what the demo and narrow tables print). None when nothing matches.

    Raises:
        AmbiguousRequestId: the prefix matches several requests.
    """
    if runtime.redis.exists(runtime.keys.record(text)):
        return text
    if len(text) < MIN_PREFIX_LENGTH or not _ID_TEXT.match(text):
        return None
    matches = {
        str(member)
        for member, _ in runtime.redis.zscan_iter(
            runtime.keys.requests_by_time, match=f"{text.lower()}*", count=1000
        )
    }
    with runtime.redis.pipeline(transaction=False) as pipe:
        ordered = sorted(matches)
        for request_id in ordered:
            pipe.exists(runtime.keys.record(request_id))
        live = [
            request_id for request_id, found in zip(ordered, pipe.execute(), strict=True) if found
        ]
    if len(live) > 1:
        raise AmbiguousRequestId(text, live)
    return live[0] if live else None


def as_shown(runtime: Runtime, record: ResendRecord) -> ResendRecord:
    """One record as every interface shows it (see `shown_records`)."""
    return shown_records(runtime, [record])[0]


def shown_records(runtime: Runtime, records: Sequence[ResendRecord]) -> list[ResendRecord]:
    """Records as every interface shows them (CLI, REST API, console, webhook answers), so a
    request has one name in all of them (README, "States"): while its call to Tango is under
    way, `in_flight` (what a cancel then answers); a request queued behind an earlier one of
    its order, `deferred`, waiting for its turn (its stored status says so only once a task
    has looked). Reads one field per unfinished record, in one round trip."""
    pending = [record for record in records if not record.status.is_final]
    if not pending:
        return list(records)
    now = runtime.clock.timestamp()
    with runtime.redis.pipeline(transaction=False) as pipe:
        for record in pending:
            pipe.hget(runtime.keys.record(record.id), "calling_until")
        calling = {
            record.id: float(until or 0)
            for record, until in zip(pending, pipe.execute(), strict=True)
        }
    heads: dict[str, str | None] = {}
    shown = []
    for record in records:
        if record.status.is_final:
            shown.append(record)
        elif calling[record.id] > now:
            update = {"status": ResendStatus.IN_FLIGHT, "reason": CALLING}
            shown.append(record.model_copy(update=update))
        elif record.status is ResendStatus.QUEUED:
            order = record.reference_order_id
            if order not in heads:
                heads[order] = runtime.records.first_waiting(order)
            head = heads[order]
            if head is None or head == record.id:
                shown.append(record)
            else:
                reason = f"{WAITING_FOR_TURN} ({head})"
                shown.append(
                    record.model_copy(update={"status": ResendStatus.DEFERRED, "reason": reason})
                )
        else:
            shown.append(record)
    return shown


def iter_requests(
    runtime: Runtime,
    *,
    order: str | None = None,
    status: ResendStatus | None = None,
    since: timedelta | None = None,
) -> Iterator[ResendRecord]:
    """Requests newest first, filtered; reads a page at a time, so memory stays flat."""
    if order is not None:
        ids = list(reversed(runtime.records.ids_for_order(order)))
        pages: Iterator[list[str]] = (ids[i : i + _PAGE] for i in range(0, len(ids), _PAGE))
    else:
        pages = _pages_by_time(runtime, since)
    cutoff = None if since is None else runtime.clock.now() - since
    for page in pages:
        for record in runtime.records.get_many(page):
            if cutoff is not None and record.created_at < cutoff:
                return
            if status is None or record.status is status:
                yield record


def _pages_by_time(runtime: Runtime, since: timedelta | None) -> Iterator[list[str]]:
    low = None if since is None else (runtime.clock.now() - since).timestamp()
    offset = 0
    while True:
        page = runtime.records.ids_by_time(low, newest_first=True, offset=offset, count=_PAGE)
        if not page:
            return
        yield page
        offset += len(page)


def order_history(runtime: Runtime, order: str) -> list[ResendRecord]:
    """Every request for one order, oldest first."""
    return runtime.records.get_many(runtime.records.ids_for_order(order))
