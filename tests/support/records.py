"""Waiting for requests to end, read through the producer API (`get_resend`)."""

from __future__ import annotations

import redis

from tests.support.waiting import WaitTimedOut, wait_for
from worker import ResendRecord, get_resend


def finished(request_ids: list[str]) -> list[ResendRecord] | None:
    """The records once every request is final, else None (a probe for `wait_for`)."""
    records = [get_resend(request_id) for request_id in request_ids]
    if all(record is not None and record.status.is_final for record in records):
        return [record for record in records if record is not None]
    return None


def all_final(request_ids: list[str]) -> list[ResendRecord] | None:
    """`finished`, with Redis down (a fault a test made) read as "not yet"."""
    try:
        return finished(request_ids)
    except redis.RedisError:
        return None


def wait_all_final(request_ids: list[str], timeout: float) -> list[ResendRecord]:
    """`all_final` with a deadline; on timeout, say where each unfinished request stands."""
    try:
        return wait_for(
            lambda: all_final(request_ids), timeout=timeout, interval=0.1, what="all final"
        )
    except WaitTimedOut:
        records = [get_resend(request_id) for request_id in request_ids]
        stuck = [
            (r.id, r.reference_order_id, r.status.value, r.attempts, r.reason, r.next_attempt_at)
            for r in records
            if r is not None and not r.status.is_final
        ]
        raise WaitTimedOut(f"not final after {timeout}s: {stuck}") from None


def mark_sent(request_id: str, minutes_ago: float = 0) -> None:
    """Finish a request as a worker does after Tango's 201, sent `minutes_ago` (Redis's
    clock): for tests of what a sent request changes, without a worker."""
    from datetime import timedelta

    from worker.runtime import current_runtime
    from worker.state.records import PROMOTE_MARGIN_SECONDS, ResendStatus

    runtime = current_runtime()
    record = get_resend(request_id)
    assert record is not None
    sent_at = runtime.clock.now() - timedelta(minutes=minutes_ago)
    final = record.model_copy(update={"status": ResendStatus.SENT, "sent_at": sent_at})
    assert runtime.records.finish(final, PROMOTE_MARGIN_SECONDS)
