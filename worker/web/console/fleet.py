"""The fleet overview: what the console's fleet page shows, read cheaply from Redis.

Nothing here scans every record: counts are over the newest `RECENT_LIMIT` requests of the
last day, waiting requests are sampled from the due index, calls per second come from two
readings of the fleet's call counter, and the workers are asked once per `WORKERS_CACHE_SECONDS`
for the whole fleet (the answer is cached in Redis).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal, cast

from worker.runtime import Runtime
from worker.state.queries import WAITING_FOR_TURN
from worker.state.records import ResendRecord, ResendStatus

logger = logging.getLogger("tango_resend.console")

RECENT_LIMIT = 2000
RECENT_SECONDS = 24 * 3600
WAITING_SAMPLE = 1000
FAILURES_SHOWN = 10
WORKERS_CACHE_SECONDS = 10
WORKERS_TIMEOUT_SECONDS = 0.5
_SAMPLES_KEPT = 60
_RATE_SPAN_SECONDS = 60.0

WaitReason = Literal["window", "turn", "rate_limit", "backoff", "outage", "queued"]

# Why a request waits, in the words the fleet page uses.
WAIT_REASONS: dict[WaitReason, str] = {
    "window": "the order's window (ours, or Tango's cooldown)",
    "turn": "its turn behind an earlier request of the same order",
    "rate_limit": "a slot of the fleet's rate limit",
    "backoff": "a retry after a transient failure",
    "outage": "Tango to come back (unreachable, credentials refused, 503 or 429)",
    "queued": "a worker to take it (due now)",
}


@dataclass
class FleetOverview:
    counts: dict[str, int]
    recent_scanned: int
    waiting: dict[WaitReason, int]
    waiting_total: int
    calls_per_second: float | None
    rate_limit: float
    queue_depth: int
    recent_failures: list[ResendRecord] = field(default_factory=list)
    workers: list[str] | None = None


def wait_reason(record: ResendRecord) -> WaitReason:
    """Which of `WAIT_REASONS` keeps an unfinished request waiting."""
    reason = record.reason or ""
    if record.status is ResendStatus.RETRYING:
        return "backoff"
    if record.status is ResendStatus.WAITING:
        return "outage"
    if record.status is ResendStatus.QUEUED:
        return "queued"
    if reason.startswith(WAITING_FOR_TURN):
        return "turn"
    if "rate-limit" in reason or "rate limit" in reason:
        return "rate_limit"
    return "window"


def overview(runtime: Runtime) -> FleetOverview:
    """Read the fleet's state now."""
    counts, scanned, failed_ids = _recent_counts(runtime)
    waiting, total = _waiting(runtime)
    failures = runtime.records.get_many(failed_ids[:FAILURES_SHOWN])
    return FleetOverview(
        counts=counts,
        recent_scanned=scanned,
        waiting=waiting,
        waiting_total=total,
        calls_per_second=_calls_per_second(runtime),
        rate_limit=runtime.settings.tango_rate_limit,
        queue_depth=int(runtime.redis.llen(runtime.settings.resend_queue)),
        recent_failures=failures,
        workers=_workers(runtime),
    )


def _recent_counts(runtime: Runtime) -> tuple[dict[str, int], int, list[str]]:
    seconds, _ = runtime.redis.time()
    ids = runtime.records.ids_by_time(
        float(seconds) - RECENT_SECONDS, newest_first=True, offset=0, count=RECENT_LIMIT
    )
    with runtime.redis.pipeline(transaction=False) as pipe:
        for request_id in ids:
            pipe.hget(runtime.keys.record(request_id), "status")
        statuses = pipe.execute()
    counts = {status.value: 0 for status in ResendStatus}
    failed: list[str] = []
    for request_id, status in zip(ids, statuses, strict=True):
        if status in counts:
            counts[str(status)] += 1
        if status == ResendStatus.FAILED.value:
            failed.append(request_id)
    return counts, len(ids), failed


def _waiting(runtime: Runtime) -> tuple[dict[WaitReason, int], int]:
    total = int(runtime.redis.zcard(runtime.keys.due_index))
    sample = cast(
        list[tuple[str, float]],
        runtime.redis.zrange(runtime.keys.due_index, 0, WAITING_SAMPLE - 1, withscores=True),
    )
    waiting = dict.fromkeys(WAIT_REASONS, 0)
    finite = [str(member) for member, score in sample if score != float("inf")]
    waiting["turn"] += len(sample) - len(finite)  # +inf: queued behind another of the order
    for record in runtime.records.get_many(finite):
        waiting[wait_reason(record)] += 1
    return waiting, total


def _calls_per_second(runtime: Runtime) -> float | None:
    """Tango calls per second over about the last minute, from readings of the fleet's call
    counter that every page view adds to (None until two readings a few seconds apart)."""
    raw = runtime.redis.hgetall(runtime.keys.metrics)
    calls = sum(float(v) for k, v in raw.items() if str(k).startswith("tango_calls_total|"))
    seconds, micros = runtime.redis.time()
    now = int(seconds) + int(micros) / 1e6
    key = runtime.keys.console_call_samples
    with runtime.redis.pipeline(transaction=False) as pipe:
        pipe.lrange(key, 0, -1)
        pipe.lpush(key, json.dumps([now, calls]))
        pipe.ltrim(key, 0, _SAMPLES_KEPT - 1)
        pipe.expire(key, int(_RATE_SPAN_SECONDS * 10))
        earlier = pipe.execute()[0]
    readings: list[tuple[float, float]] = [tuple(json.loads(item)) for item in earlier]
    usable = [(at, count) for at, count in readings if 2.0 <= now - at <= _RATE_SPAN_SECONDS * 2]
    if not usable:
        return None
    at, count = min(usable, key=lambda reading: abs(now - reading[0] - _RATE_SPAN_SECONDS))
    return max(0.0, (calls - float(count)) / (now - float(at)))


def _workers(runtime: Runtime) -> list[str] | None:
    """Node names of the workers consuming our queue (None: the broker did not answer)."""
    key = runtime.keys.console_workers_seen
    cached = runtime.redis.get(key)
    if cached is not None:
        workers: list[str] | None = json.loads(cached)
        return workers
    workers = _ask_workers(runtime.settings.resend_queue)
    runtime.redis.set(key, json.dumps(workers), ex=WORKERS_CACHE_SECONDS)
    return workers


def _ask_workers(queue: str) -> list[str] | None:
    from worker.queueing.app import app

    try:
        replies = app.control.inspect(timeout=WORKERS_TIMEOUT_SECONDS).active_queues() or {}
    except Exception:  # the broker failed; the rest of the page still shows
        logger.warning("could not ask the workers which queues they consume", exc_info=True)
        return None
    return sorted(
        node
        for node, queues in replies.items()
        if any(item.get("name") == queue for item in queues or [])
    )
