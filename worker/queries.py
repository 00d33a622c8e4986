"""Read-only questions about requests, for the CLI and the web API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from worker.records import ResendRecord, ResendStatus
from worker.runtime import Runtime

_PAGE = 200


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
