"""Prometheus metrics, kept in Redis so they are fleet-wide and right with any Celery pool.

Every process (prefork children included) adds to one Redis hash; whoever is scraped (the web
app's /metrics, or a worker's METRICS_PORT) reads it and the queue gauges at scrape time. So
the numbers are the fleet's, a restarted process loses nothing, and no multiprocess directory
is needed. This module counts; `metrics_export.py` reads the counts for a scrape (the one part
that needs prometheus_client, which a producer does not install).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import redis

from worker.core.conditions import REDIS_UNREACHABLE, redis_error_detail
from worker.state.keys import RedisKeys

logger = logging.getLogger("tango_resend.metrics")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SEND_DELAY_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)
HISTOGRAM_BUCKETS = {
    "tango_latency": LATENCY_BUCKETS,
    "token_latency": LATENCY_BUCKETS,
    "send_delay": SEND_DELAY_BUCKETS,
}
# kombu's Redis transport keeps a queue's priorities in separate lists with these suffixes.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class DeferralReason(StrEnum):
    """The `reason` label of `tango_resend_deferrals_total` (the values are the metric's)."""

    TURN = "turn"  # an earlier request of the order goes first
    # Another request holds the order's window. The label says "lock", the window's old name:
    # dashboards and alerts select on it, so the public value stays.
    WINDOW = "lock"
    RATE_LIMIT = "rate_limit"  # waiting for the fleet's next rate-limit slot
    COOLDOWN = "cooldown"  # Tango answered with its cooldown error (403.005)


class ProbeResult(StrEnum):
    """The `result` label of `tango_resend_probes_total`: what a probe after an ambiguous
    call found."""

    SENT = "sent"  # a 201: the probe was the resend
    CONFIRMED = "confirmed"  # Tango's cooldown answer proved the earlier call resent
    INCONCLUSIVE = "inconclusive"  # anything else


class MetricsRecorder:
    """Adds observations to the fleet's counters; a failure to record never fails the work."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._key = keys.metrics
        self._local = threading.local()

    def deferral(self, reason: DeferralReason) -> None:
        self._add({f"deferrals_total|{reason}": 1})

    def tango_call(self, status: int | None, latency_seconds: float) -> None:
        fields = {f"tango_calls_total|{status if status is not None else 'error'}": 1.0}
        fields.update(_histogram_fields("tango_latency", latency_seconds))
        self._add(fields)

    def token_call(self, status: int | None, latency_seconds: float) -> None:
        """A call to the OAuth token endpoint: its own series, apart from resend calls."""
        fields = {f"token_calls_total|{status if status is not None else 'error'}": 1.0}
        fields.update(_histogram_fields("token_latency", latency_seconds))
        self._add(fields)

    def callback(self, outcome: str) -> None:
        self._add({f"callbacks_total|{outcome}": 1})

    def probe(self, result: ProbeResult) -> None:
        """A probe after an ambiguous call (see `ProbeResult`)."""
        self._add({f"probes_total|{result}": 1})

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Send everything recorded inside in one round trip (per thread: pools share us)."""
        self._local.pending = {}
        try:
            yield
        finally:
            pending, self._local.pending = self._local.pending, None
            self._send(pending)

    def take_pending(self) -> dict[str, float]:
        """Hand over what this thread's open batch holds so far (nothing outside a batch): the
        script that stores a run's outcome adds it with its own writes, so a resend's counts
        cost no round trip of their own."""
        pending: dict[str, float] | None = getattr(self._local, "pending", None)
        if not pending:
            return {}
        self._local.pending = {}
        return pending

    def _add(self, fields: dict[str, float]) -> None:
        pending: dict[str, float] | None = getattr(self._local, "pending", None)
        if pending is None:
            self._send(fields)
            return
        for name, amount in fields.items():
            pending[name] = pending.get(name, 0.0) + amount

    def _send(self, fields: dict[str, float]) -> None:
        if not fields:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for name, amount in fields.items():
                    pipe.hincrbyfloat(self._key, name, amount)
                pipe.execute()
        except redis.RedisError as error:
            REDIS_UNREACHABLE.report(f"metrics: {redis_error_detail(error)}")


# The counters the create script adds for a submission that is new, merged into a pending
# request (coalesced), or a repeated idempotency key (a redelivery), in that order.
SUBMISSION_COUNTERS = ("requests_total|accepted", "requests_total|coalesced", "redeliveries_total|")
# A submission the recent-resend guard answered with a request sent to the same recipient.
RECENT_COUNTER = "requests_total|recent"


def outcome_fields(status: str, send_delay_seconds: float | None) -> dict[str, float]:
    """The counters a final outcome adds, for the script that stores it to add in the same
    atomic step (worker/state/lua/finish.lua): a worker dying right after storing an
    outcome cannot lose its count, and a stale run that stores nothing counts nothing.
    `send_delay_seconds` (enqueue to Tango's 201) is given for a sent request only."""
    fields = {f"requests_total|{status}": 1.0}
    if send_delay_seconds is not None:
        fields.update(_histogram_fields("send_delay", send_delay_seconds))
    return fields


def _histogram_fields(name: str, value: float) -> dict[str, float]:
    """One bucket per observation (the smallest that holds it); scrapes add them up."""
    bucket = next((str(bound) for bound in HISTOGRAM_BUCKETS[name] if value <= bound), "+Inf")
    return {f"{name}_sum|": value, f"{name}_count|": 1.0, f"{name}_bucket|{bucket}": 1.0}
