"""Many resends at once: a CSV file, or every order Tango sent in a time range.

Both stream: rows and orders are read, checked and queued one at a time, so memory stays flat
for a file of any length (a file is read twice: every row is validated before any is queued).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from worker.producer import submit_resend
from worker.records import request_fingerprint
from worker.runtime import Runtime
from worker.validation import InvalidResendRequest, validate_resend

CSV_COLUMNS = ("referenceOrderID", "newEmail", "newMobile", "newEtid", "newDeliveryMethod")
MAX_DAYS_PER_QUERY = 100  # Tango's order listing takes ranges of at most 100 days
ELEMENTS_PER_BLOCK = 100  # and pages of at most 100 orders

Progress = Callable[[int], None]


class BulkInputError(ValueError):
    """Raised when a whole input is unusable (unreadable file, wrong columns, bad range)."""


@dataclass
class BulkSummary:
    """What happened to each row or order; `rejected` lists only the bad ones, `requests`
    (real runs only) the request id each good row was queued as or coalesced into."""

    accepted: int = 0
    coalesced: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def as_json(
        self, include_skipped: bool = False, include_requests: bool = False
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "accepted": self.accepted,
            "coalesced": self.coalesced,
            "rejected": self.rejected,
        }
        if include_skipped:
            summary["skipped"] = self.skipped
        if include_requests:
            summary["requests"] = self.requests
        return summary


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, fields) for each data row; row 1 is the first line after the header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            unknown = sorted(set(columns) - set(CSV_COLUMNS))
            if "referenceOrderID" not in columns or unknown:
                raise BulkInputError(
                    f"{path}: the header must name referenceOrderID and only "
                    f"{', '.join(CSV_COLUMNS)}"
                    + (f" (unknown: {', '.join(unknown)})" if unknown else "")
                )
            for number, row in enumerate(reader, start=1):
                cells = {
                    (key or "").strip(): (value or "").strip()
                    for key, value in row.items()
                    if key is not None
                }
                if None in row:  # more cells than the header has columns
                    cells["(extra cells)"] = "unexpected"
                yield number, {key: value for key, value in cells.items() if value}
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BulkInputError(f"{path}: {error}") from None


def count_rows(path: Path) -> int:
    return sum(1 for _ in _rows(path))


def enqueue_file(path: Path, *, dry_run: bool, progress: Progress | None = None) -> BulkSummary:
    """Validate every row, then (unless `dry_run`) queue the good ones."""
    summary = BulkSummary()
    bad_rows: set[int] = set()
    for number, fields in _rows(path):
        try:
            validate_resend(fields)
        except InvalidResendRequest as error:
            bad_rows.add(number)
            summary.rejected.append({"row": number, "errors": _describe(error)})
    predicted: set[str] = set()  # dry run: fingerprints seen, to predict coalescing
    for number, fields in _rows(path):
        if progress:
            progress(1)
        if number in bad_rows:
            continue
        if dry_run:
            _predict(summary, predicted, fields)
            continue
        _submit(summary, number, fields, idempotency_key=None)
    return summary


def _predict(summary: BulkSummary, seen: set[str], fields: dict[str, str]) -> None:
    """Count a row as a real run would count it against the rest of the file: a repeat of an
    earlier row is coalesced. (A dry run reads nothing from Redis, so requests already
    pending there are not predicted.)"""
    request = validate_resend(fields)
    key = request_fingerprint(request.reference_order_id, request.tango_body())
    if key in seen:
        summary.coalesced += 1
    else:
        seen.add(key)
        summary.accepted += 1


def enqueue_orders_between(
    runtime: Runtime,
    start: datetime,
    end: datetime,
    *,
    customer: str | None = None,
    account: str | None = None,
    dry_run: bool,
    progress: Progress | None = None,
) -> BulkSummary:
    """Resend every order Tango created and delivered itself between `start` and `end`."""
    if end <= start:
        raise BulkInputError("END must be after START")
    summary = BulkSummary()
    for order in iter_orders(runtime, start, end, customer=customer, account=account):
        if progress:
            progress(1)
        order_id = str(order.get("referenceOrderID", ""))
        if not delivered_by_tango(order):
            summary.skipped += 1
            continue
        fields = {"referenceOrderID": order_id}
        try:
            validate_resend(fields)
        except InvalidResendRequest as error:
            summary.rejected.append({"row": order_id, "errors": _describe(error)})
            continue
        if dry_run:
            summary.accepted += 1
            continue
        # The same recovery run twice within a day does not resend twice.
        key = f"recovery:{order_id}:{start.isoformat()}:{end.isoformat()}"
        _submit(summary, order_id, fields, idempotency_key=key)
    return summary


def delivered_by_tango(order: dict[str, Any]) -> bool:
    """Tango can only resend what it delivered: not orders sent with delivery left to us."""
    if order.get("sendEmail") is False:
        return False
    return str(order.get("deliveryMethod") or "EMAIL").upper() != "NONE"


def iter_orders(
    runtime: Runtime, start: datetime, end: datetime, *, customer: str | None, account: str | None
) -> Iterator[dict[str, Any]]:
    """Every order in the range: chunks of at most 100 days, every page of each."""
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + timedelta(days=MAX_DAYS_PER_QUERY), end)
        page = 0
        while True:
            params: dict[str, str | int] = {
                "startDate": _rfc3339(chunk_start),
                "endDate": _rfc3339(chunk_end),
                "elementsPerBlock": ELEMENTS_PER_BLOCK,
                "page": page,
            }
            if customer:
                params["customerIdentifier"] = customer
            if account:
                params["accountIdentifier"] = account
            time.sleep(runtime.gate.reserve_slot("list"))  # the fleet's rate limit covers us too
            # A 401 answered by renewing the token sends again: that send takes a slot too.
            answer = runtime.tango.list_orders(
                params, before_retry=lambda: time.sleep(runtime.gate.reserve_slot("list"))
            )
            body = answer.body or {}
            orders = body.get("orders") or []
            yield from (order for order in orders if isinstance(order, dict))
            total = _total(body)
            page += 1
            if len(orders) < ELEMENTS_PER_BLOCK or (
                total is not None and page * ELEMENTS_PER_BLOCK >= total
            ):
                break
        chunk_start = chunk_end


def _total(body: dict[str, Any]) -> int | None:
    page = body.get("page")
    if isinstance(page, dict) and isinstance(page.get("totalCount"), int):
        return int(page["totalCount"])
    return None


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _submit(
    summary: BulkSummary, row: int | str, fields: dict[str, str], idempotency_key: str | None
) -> None:
    submission = submit_resend(fields, idempotency_key=idempotency_key)
    if submission.created:
        summary.accepted += 1
    else:
        summary.coalesced += 1
    summary.requests.append(
        {"row": row, "id": submission.request_id, "coalesced": not submission.created}
    )


def _describe(error: InvalidResendRequest) -> str:
    return "; ".join(f"{name}: {why}" for name, why in error.errors.items())
