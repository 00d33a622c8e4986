"""Prometheus metrics, kept in Redis so they are fleet-wide and right with any Celery pool.

Every process (prefork children included) adds to one Redis hash; whoever is scraped (the web
app's /metrics, or a worker's METRICS_PORT) reads it and the queue gauges at scrape time. So
the numbers are the fleet's, a restarted process loses nothing, and no multiprocess directory
is needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from worker.state.keys import RedisKeys
from worker.state.redis_health import eviction_policy, evicts

logger = logging.getLogger("tango_resend.metrics")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SEND_DELAY_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)
_HISTOGRAMS = {
    "tango_latency": LATENCY_BUCKETS,
    "token_latency": LATENCY_BUCKETS,
    "send_delay": SEND_DELAY_BUCKETS,
}
# kombu's Redis transport keeps a queue's priorities in separate lists with these suffixes.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


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
        except redis.RedisError:
            logger.warning("could not record metrics", exc_info=True)


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
    bucket = next((str(bound) for bound in _HISTOGRAMS[name] if value <= bound), "+Inf")
    return {f"{name}_sum|": value, f"{name}_count|": 1.0, f"{name}_bucket|{bucket}": 1.0}


class RedisMetricsCollector(Collector):
    """Reads the fleet's metrics from Redis at scrape time."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, queue: str) -> None:
        self._client = client
        self._keys = keys
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        try:
            raw = {str(k): float(v) for k, v in self._client.hgetall(self._keys.metrics).items()}
            depth, due_now, scheduled, waiting = self._gauges()
        except redis.RedisError:
            logger.warning("could not read metrics from Redis", exc_info=True)
            return
        yield _counter(
            raw,
            "requests_total",
            "outcome",
            "Requests by outcome (accepted, coalesced, recent, sent, failed, cancelled).",
        )
        yield _counter(
            raw,
            "deferrals_total",
            "reason",
            "Deferrals by reason (lock, cooldown, rate_limit, turn).",
        )
        yield _counter(
            raw,
            "tango_calls_total",
            "status",
            "Calls to Tango by HTTP status ('error': no answer).",
        )
        yield _counter(
            raw,
            "token_calls_total",
            "status",
            "Calls to the OAuth token endpoint by HTTP status ('error': no answer).",
        )
        yield CounterMetricFamily(
            "tango_resend_redeliveries",
            "Submissions that repeated an idempotency key already seen (webhook replays).",
            value=raw.get("redeliveries_total|", 0.0),
        )
        yield _counter(
            raw,
            "callbacks_total",
            "outcome",
            "Outcome callbacks by result (delivered, retried, abandoned, gone; a duplicate "
            "delivery of one already delivered is 'duplicate', not 'delivered').",
        )
        yield _counter(
            raw,
            "probes_total",
            "result",
            "Probes after an ambiguous call, by result (sent, confirmed, inconclusive).",
        )
        yield _histogram(
            raw,
            "tango_latency",
            "tango_resend_tango_latency_seconds",
            "Time Tango took to answer a resend call.",
        )
        yield _histogram(
            raw,
            "token_latency",
            "tango_resend_token_latency_seconds",
            "Time the OAuth token endpoint took to answer.",
        )
        yield _histogram(
            raw,
            "send_delay",
            "tango_resend_send_delay_seconds",
            "Time from enqueue to Tango's 201.",
        )
        yield GaugeMetricFamily(
            "tango_resend_queue_depth", "Task messages waiting in the Celery queue.", value=depth
        )
        parked = GaugeMetricFamily(
            "tango_resend_parked",
            "Unfinished requests waiting in Redis, by state.",
            labels=["state"],
        )
        parked.add_metric(["due"], due_now)
        parked.add_metric(["scheduled"], scheduled)
        parked.add_metric(["waiting_for_turn"], waiting)
        yield parked
        yield from _overdue_metrics(self._client, self._keys)
        yield from _eviction_metrics(self._client)

    def _gauges(self) -> tuple[float, float, float, float]:
        seconds, micros = self._client.time()
        now = int(seconds) + int(micros) / 1e6
        with self._client.pipeline(transaction=False) as pipe:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(self._queue + suffix)
            pipe.zcount(self._keys.due_index, "-inf", now)
            pipe.zcount(self._keys.due_index, f"({now}", "(inf")
            pipe.zcount(self._keys.due_index, "+inf", "+inf")
            replies = pipe.execute()
        depth = sum(int(n) for n in replies[: len(_PRIORITY_SUFFIXES)])
        due_now, scheduled, waiting = (float(n) for n in replies[len(_PRIORITY_SUFFIXES) :])
        return float(depth), due_now, scheduled, waiting


def _overdue_metrics(client: redis.Redis, keys: RedisKeys) -> Iterator[Metric]:
    """How long the most overdue waiting request has been due (its window, rate-limit slot,
    backoff or lease over) without being released: 0 in a healthy fleet, whose schedulers
    release a request within moments of its due time. For the alert on requests waiting
    past their window (deploy/prometheus/alerts.yml)."""
    try:
        seconds, micros = client.time()
        oldest = client.zrange(keys.due_index, 0, 0, withscores=True)
    except redis.RedisError:
        logger.warning("could not read the due index", exc_info=True)
        return
    now = int(seconds) + int(micros) / 1e6
    due_at = float(oldest[0][1]) if oldest else now
    yield GaugeMetricFamily(
        "tango_resend_oldest_due_overdue_seconds",
        "How long the most overdue waiting request has been past its due time (its window, "
        "rate-limit slot or backoff over) without a worker taking it; 0 when none is.",
        value=max(0.0, now - due_at),
    )


def _eviction_metrics(client: redis.Redis) -> Iterator[Metric]:
    """Whether Redis may evict our data, for an alert (docs/guarantees.md, "Redis must not
    evict"). Read apart from the rest: a Redis that refuses INFO still gets its other metrics."""
    try:
        policy = eviction_policy(client)
    except redis.RedisError:
        logger.warning("could not read Redis's maxmemory-policy", exc_info=True)
        return
    if policy is None:
        return
    yield GaugeMetricFamily(
        "tango_resend_redis_eviction_unsafe",
        "1 when Redis's maxmemory-policy lets it drop our keys (anything but noeviction).",
        value=1.0 if evicts(policy) else 0.0,
    )
    info = GaugeMetricFamily(
        "tango_resend_redis_maxmemory_policy",
        "Redis's maxmemory-policy, as a label (the value is always 1).",
        labels=["policy"],
    )
    info.add_metric([policy], 1.0)
    yield info


def _counter(raw: dict[str, float], name: str, label: str, doc: str) -> CounterMetricFamily:
    family = CounterMetricFamily(f"tango_resend_{name}", doc, labels=[label])
    for field, value in sorted(raw.items()):
        metric, _, label_value = field.partition("|")
        if metric == name:
            family.add_metric([label_value], value)
    return family


def _histogram(raw: dict[str, float], prefix: str, name: str, doc: str) -> HistogramMetricFamily:
    buckets, running = [], 0.0
    for bound in _HISTOGRAMS[prefix]:
        running += raw.get(f"{prefix}_bucket|{bound}", 0.0)
        buckets.append((str(bound), running))
    buckets.append(("+Inf", raw.get(f"{prefix}_count|", 0.0)))
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], buckets, sum_value=raw.get(f"{prefix}_sum|", 0.0))
    return family


def build_registry(client: redis.Redis, keys: RedisKeys, queue: str) -> CollectorRegistry:
    """A registry holding only the fleet's metrics (no per-process default collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisMetricsCollector(client, keys, queue))
    return registry
