"""Many resends at once from a CSV file, and the summary every bulk run reports (the other
bulk run, every order Tango sent in a time range, is `worker/cli/recovery.py`'s).

Both stream: rows and orders are read, checked and queued as they come (a file's rows
`ROWS_PER_ROUND_TRIP` at a time, in one round trip to Redis), so memory stays flat for a file
of any length. A file is first copied aside (and hashed) in one read; every row of the copy is
validated before any is queued, then the copy is queued, so a file changed meanwhile cannot
mix two versions (the change is reported). Only the first `REJECTED_SHOWN` rejected rows are
kept in full; the rest are counted.

Reruns are safe. Each row carries an idempotency key made of the file's content (SHA-256) or
a `--batch-id`, and the row's number, kept as long as a record: running the same file again
after a failure queues only the rows still missing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from worker.core.errors import TangoResendError
from worker.resend import origins
from worker.resend.producer import RedisUnavailable, Submission, submit_many
from worker.resend.validation import InvalidResendRequest, validate_resend
from worker.runtime import current_runtime
from worker.state.records import SubmissionOutcome, request_fingerprint

CSV_COLUMNS = ("referenceOrderID", "newEmail", "newMobile", "newEtid", "newDeliveryMethod")

# Rows of a file queued per round trip to Redis (a pipeline of create scripts): enough to
# make the round trip's cost negligible, few enough that Redis serves other clients between
# pipelines within milliseconds, and that memory stays flat.
ROWS_PER_ROUND_TRIP = 500
# Rejected rows reported in full (row and errors); beyond these they are only counted.
REJECTED_SHOWN = 1000
# A dry run predicts in-file repeats exactly for this many distinct rows (8 bytes each).
PREDICTED_DISTINCT_ROWS = 500_000

Progress = Callable[[int], None]


class BulkInputError(TangoResendError, ValueError):
    """Raised when a whole input is unusable (unreadable file, wrong columns, bad range)."""


class StopReason(StrEnum):
    """Why a bulk run stopped early (`"stopped": {"reason": ...}` in its JSON summary)."""

    REDIS = "redis"  # Redis could not store a request: the CLI exits 3
    TANGO = "tango"  # Tango failed while listing orders: the CLI exits 4


@dataclass
class BulkSummary:
    """What happened to each row or order. `rejected` holds the first `REJECTED_SHOWN` bad
    ones in full (`rejected_total` counts them all); `requests` (real runs only) the request
    id each good row was queued as, coalesced into, or queued as by an earlier run
    (`already_queued`). `stopped` says where and why a run stopped early."""

    accepted: int = 0
    coalesced: int = 0
    already_queued: int = 0
    # Answered by the recent-resend guard: sent to the same recipient moments before.
    recent: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_total: int = 0
    skipped: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # Only `--json` prints `requests`; without it a 1,000,000-row file keeps none in memory.
    keep_requests: bool = field(default=True, repr=False)
    stopped: dict[str, Any] | None = None
    file_changed: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def stopped_by_tango(self) -> bool:
        return self.stopped is not None and self.stopped["reason"] == StopReason.TANGO

    def reject(self, row: int | str, error: InvalidResendRequest) -> None:
        self.rejected_total += 1
        if len(self.rejected) < REJECTED_SHOWN:
            self.rejected.append({"row": row, "errors": _describe(error)})

    def as_json(
        self, include_skipped: bool = False, include_requests: bool = False
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "accepted": self.accepted,
            "coalesced": self.coalesced,
            "already_queued": self.already_queued,
            "recent": self.recent,
            "rejected": self.rejected,
            "rejected_total": self.rejected_total,
        }
        if include_skipped:
            summary["skipped"] = self.skipped
        if include_requests:
            summary["requests"] = self.requests
        if self.stopped is not None:
            summary["stopped"] = self.stopped
        if self.file_changed is not None:
            summary["file_changed"] = self.file_changed
        if self.warnings:
            summary["warnings"] = self.warnings
        return summary


def _rows(path: Path, shown: Path | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, fields) for each data row; row 1 is the first line after the header.
    Errors name `shown` (the file the user gave) rather than `path` (a copy of it)."""
    shown = shown or path
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            unknown = sorted(set(columns) - set(CSV_COLUMNS))
            if "referenceOrderID" not in columns or unknown:
                raise BulkInputError(
                    f"{shown}: the header must name referenceOrderID and only "
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
        raise BulkInputError(f"{shown}: {error}") from None


def count_rows(path: Path) -> int:
    return sum(1 for _ in _rows(path))


def enqueue_file(
    path: Path,
    *,
    dry_run: bool,
    progress: Progress | None = None,
    batch_id: str | None = None,
    keep_requests: bool = True,
    force: bool = False,
) -> BulkSummary:
    """Validate every row, then (unless `dry_run`) queue the good ones, each under the
    idempotency key `bulk:<batch>:<row>` (batch: `batch_id`, or the file's SHA-256). A Redis
    failure stops the run with `stopped` set; the rows before it are queued, and a rerun of
    the same file (or with the same `batch_id`) queues only the rest. `keep_requests` keeps
    each row's request id in `requests` (memory that grows with the file). Each request's
    origin is `bulk <file>:<row>`; `force` passes the recent-resend guard."""
    summary = BulkSummary(keep_requests=keep_requests)
    with tempfile.TemporaryDirectory(prefix="tango-resend-bulk-") as folder:
        copy = Path(folder) / "rows.csv"
        before, digest = _snapshot(path, copy)
        batch = batch_id if batch_id is not None else f"sha256:{digest}"
        for number, fields in _rows(copy, path):
            try:
                validate_resend(fields)
            except InvalidResendRequest as error:
                summary.reject(number, error)
        if dry_run:
            predicted: set[int] = set()  # fingerprints seen, to predict coalescing
            for _, fields in _rows(copy, path):
                if progress:
                    progress(1)
                with contextlib.suppress(InvalidResendRequest):  # rejected above
                    _predict(summary, predicted, fields)
        else:
            _queue_rows(summary, _rows(copy, path), batch, progress, (path.name, force))
    if _identity(path) != before:
        summary.file_changed = (
            f"{path} changed while it was being read: the version read at the start "
            f"(sha256 {digest}) was the one queued; changes made since were not"
        )
    return summary


def _queue_rows(
    summary: BulkSummary,
    rows: Iterator[tuple[int, dict[str, str]]],
    batch: str,
    progress: Progress | None,
    source: tuple[str, bool],
) -> None:
    """Queue the rows `ROWS_PER_ROUND_TRIP` at a time (`submit_many`: one round trip to
    Redis for them all, each row stored as if on its own), counting each in file order. The
    first row that Redis did not store stops the run there; rows after it in the same round
    trip may have been stored too, and a rerun finds them by their keys (already queued)."""
    ttl = current_runtime().settings.resend_record_ttl_seconds
    file_name, force = source
    while chunk := list(itertools.islice(rows, ROWS_PER_ROUND_TRIP)):
        results = submit_many(
            [(fields, f"bulk:{batch}:{number}") for number, fields in chunk],
            idempotency_ttl_seconds=ttl,
            origins_by_request=[origins.bulk(file_name, number) for number, _ in chunk],
            force=force,
        )
        for (number, _), result in zip(chunk, results, strict=True):
            if isinstance(result, InvalidResendRequest):
                continue  # rejected above (the copy cannot change between its two reads)
            if isinstance(result, RedisUnavailable):
                summary.stopped = {"row": number, "reason": StopReason.REDIS, "error": str(result)}
                return
            count_submission(summary, number, result)
        if progress:
            progress(len(chunk))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _snapshot(path: Path, copy: Path) -> tuple[tuple[int, int] | None, str]:
    """Copy the file aside in one read: (its size and mtime before, SHA-256 of the copy)."""
    before = _identity(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as source, copy.open("wb") as target:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                target.write(chunk)
    except OSError as error:
        raise BulkInputError(f"{path}: {error}") from None
    return before, digest.hexdigest()


def _predict(summary: BulkSummary, seen: set[int], fields: dict[str, str]) -> None:
    """Count a row as a real run would count it against the rest of the file: a repeat of an
    earlier row is coalesced. (A dry run reads nothing from Redis, so requests already
    pending there are not predicted.) Past `PREDICTED_DISTINCT_ROWS` distinct rows, repeats
    of rows not yet seen are counted as accepted, and a warning says so."""
    request = validate_resend(fields)
    key = int(request_fingerprint(request.reference_order_id, request.tango_body())[:16], 16)
    if key in seen:
        summary.coalesced += 1
        return
    summary.accepted += 1
    if len(seen) < PREDICTED_DISTINCT_ROWS:
        seen.add(key)
    elif not summary.warnings:
        summary.warnings.append(
            f"repeats are predicted among the first {PREDICTED_DISTINCT_ROWS} distinct rows only"
        )


def count_submission(summary: BulkSummary, row: int | str, submission: Submission) -> None:
    """Count what became of one row or order, and keep its id when `keep_requests`."""
    if submission.created:
        summary.accepted += 1
    elif submission.outcome == SubmissionOutcome.IDEMPOTENT:
        summary.already_queued += 1
    elif submission.outcome == SubmissionOutcome.RECENT:
        summary.recent += 1
    else:
        summary.coalesced += 1
    if not summary.keep_requests:
        return
    summary.requests.append(
        {
            "row": row,
            "id": submission.request_id,
            "coalesced": submission.outcome == SubmissionOutcome.MERGED,
            "already_queued": submission.outcome == SubmissionOutcome.IDEMPOTENT,
            "recent": submission.outcome == SubmissionOutcome.RECENT,
        }
    )


def _describe(error: InvalidResendRequest) -> str:
    return "; ".join(f"{name}: {why}" for name, why in error.errors.items())
