"""Incident recovery (`enqueue --orders-between`): a resend of every order Tango created and
delivered itself in a time range.

Orders stream: they are listed, checked and queued as they come, so memory stays flat. Each
order carries a recovery marker (an idempotency key per order, kept as long as a record): an
order that already has a recovery resend pending or sent, from any run whatever its range, is
skipped; one whose recovery failed or was cancelled is queued again. A dry run reads the same
markers and the order's pending requests, so it predicts what a real run would count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from worker.cli.bulk import BulkInputError, BulkSummary, Progress, StopReason, count_submission
from worker.core.times import rfc3339
from worker.resend import origins
from worker.resend.producer import RedisUnavailable, submit_resend
from worker.resend.validation import InvalidResendRequest, validate_resend
from worker.runtime import Runtime
from worker.state.records import ResendStatus, SubmissionOutcome, request_fingerprint
from worker.tango.errors import TangoError

MAX_DAYS_PER_QUERY = 100  # Tango's order listing takes ranges of at most 100 days
ELEMENTS_PER_BLOCK = 100  # and pages of at most 100 orders
# How many failed or cancelled recoveries of one order a rerun looks past before queueing.
_MAX_RECOVERY_CHAIN = 100
# A recovery that ended so is queued again by the next run.
_RECOVERED_AGAIN = (ResendStatus.FAILED, ResendStatus.CANCELLED)


def enqueue_orders_between(
    runtime: Runtime,
    start: datetime,
    end: datetime,
    *,
    customer: str | None = None,
    account: str | None = None,
    dry_run: bool,
    progress: Progress | None = None,
    force: bool = False,
) -> BulkSummary:
    """Resend every order Tango created and delivered itself between `start` and `end`
    (compared in UTC, however they were written). An order with a recovery resend pending or
    sent from any earlier run, within a record's lifetime, is skipped (`already_queued`). A
    Tango or Redis failure stops the run with `stopped` set, after what was queued so far.
    Each request's origin is `recovery <start>/<end>`; `force` passes the recent-resend
    guard."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise BulkInputError("END must be after START")
    summary = BulkSummary()
    listed = 0
    predicted: set[str] = set()  # a dry run's orders so far: listed twice, counted once
    span = origins.recovery(f"{rfc3339(start)}/{rfc3339(end)}")
    try:
        for order in iter_orders(runtime, start, end, customer=customer, account=account):
            listed += 1
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
                summary.reject(order_id, error)
                continue
            if dry_run:
                _predict(runtime, summary, predicted, order_id)
                continue
            _recover(runtime, summary, order_id, fields, (span, force))
    except TangoError as error:
        summary.stopped = {
            "orders_listed": listed,
            "reason": StopReason.TANGO,
            "error": str(error),
        }
    except RedisUnavailable as error:
        summary.stopped = {
            "orders_listed": listed,
            "reason": StopReason.REDIS,
            "error": str(error),
        }
    return summary


def recovery_key(order_id: str, after: str | None = None) -> str:
    """The idempotency key of an order's recovery resend: one per order (whatever the range);
    after a recovery that failed or was cancelled, one keyed on that request."""
    return f"recovery:{order_id}" if after is None else f"recovery:{order_id}:after:{after}"


def _recover(
    runtime: Runtime,
    summary: BulkSummary,
    order_id: str,
    fields: dict[str, str],
    asker: tuple[str, bool],
) -> None:
    ttl = runtime.settings.resend_record_ttl_seconds
    key = recovery_key(order_id)
    origin, force = asker
    for _ in range(_MAX_RECOVERY_CHAIN):
        submission = submit_resend(
            fields, idempotency_key=key, idempotency_ttl_seconds=ttl, origin=origin, force=force
        )
        if submission.outcome == SubmissionOutcome.IDEMPOTENT:
            earlier = runtime.records.get(submission.request_id)
            if earlier is None or earlier.status in _RECOVERED_AGAIN:
                key = recovery_key(order_id, after=submission.request_id)
                continue
        count_submission(summary, order_id, submission)
        return
    raise AssertionError(f"more than {_MAX_RECOVERY_CHAIN} failed recoveries of {order_id}")


def _predict(runtime: Runtime, summary: BulkSummary, seen: set[str], order_id: str) -> None:
    """Count an order as `_recover` would, reading only: `already_queued` when its recovery
    marker names a request pending or sent (or this run listed it before), `coalesced` when
    an identical request of the order is waiting (a plain resend: no new fields), else
    `accepted`.

    Raises:
        RedisUnavailable: Redis could not be read.
    """
    try:
        outcome = _predicted_outcome(runtime, order_id, seen)
    except redis.RedisError as error:
        raise RedisUnavailable(f"could not read the order's requests: {error}") from error
    seen.add(order_id)
    if outcome == SubmissionOutcome.IDEMPOTENT:
        summary.already_queued += 1
    elif outcome == SubmissionOutcome.MERGED:
        summary.coalesced += 1
    else:
        summary.accepted += 1


def _predicted_outcome(runtime: Runtime, order_id: str, seen: set[str]) -> SubmissionOutcome:
    if order_id in seen:
        return SubmissionOutcome.IDEMPOTENT
    key = recovery_key(order_id)
    for _ in range(_MAX_RECOVERY_CHAIN):
        earlier = runtime.redis.get(runtime.keys.idempotency(key))
        if earlier is None:
            break
        record = runtime.records.get(str(earlier))
        if record is not None and record.status not in _RECOVERED_AGAIN:
            return SubmissionOutcome.IDEMPOTENT
        key = recovery_key(order_id, after=str(earlier))
    # What create.lua compares: the 64-bit fingerprint each waiting request keeps (requests
    # stored by versions before 0.2 have none and are not predicted).
    fingerprint = request_fingerprint(order_id, {})[:16]
    waiting_ids = runtime.redis.zrangebyscore(runtime.keys.order_fifo(order_id), "(0", "+inf")
    for waiting in waiting_ids:
        stored, status = runtime.redis.hmget(runtime.keys.record(str(waiting)), "fp", "status")
        if stored == fingerprint and status is not None and not ResendStatus(str(status)).is_final:
            return SubmissionOutcome.MERGED
    return SubmissionOutcome.CREATED


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


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
                "startDate": rfc3339(chunk_start),
                "endDate": rfc3339(chunk_end),
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
