"""The fleet's metrics for a Prometheus scrape, read from Redis at scrape time (what
`metrics.py` counted there, and the queue gauges)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from worker.core.conditions import REDIS_UNREACHABLE, redis_error_detail
from worker.state.health_metrics import HealthGauges
from worker.state.keys import RedisKeys
from worker.state.metrics import HISTOGRAM_BUCKETS, PRIORITY_SUFFIXES
from worker.state.outage import TangoOutage
from worker.state.redis_health import eviction_policy, evicts

logger = logging.getLogger("tango_resend.metrics")


class RedisMetricsCollector(Collector):
    """Reads the fleet's metrics from Redis at scrape time; with Redis down, what this
    process knows from its own memory (`health_metrics`)."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, queue: str, outage: TangoOutage | None = None
    ) -> None:
        self._client = client
        self._keys = keys
        self._queue = queue
        self._health = HealthGauges(outage or TangoOutage(client, keys))

    def collect(self) -> Iterator[Metric]:
        try:
            raw = {str(k): float(v) for k, v in self._client.hgetall(self._keys.metrics).items()}
            depth, due_now, scheduled, waiting = self._gauges()
        except redis.RedisError as error:
            REDIS_UNREACHABLE.report(f"metrics: {redis_error_detail(error)}")
            yield from self._health.collect(redis_up=False)
            return
        REDIS_UNREACHABLE.clear()
        yield from self._health.collect(redis_up=True)
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
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(self._queue + suffix)
            pipe.zcount(self._keys.due_index, "-inf", now)
            pipe.zcount(self._keys.due_index, f"({now}", "(inf")
            pipe.zcount(self._keys.due_index, "+inf", "+inf")
            replies = pipe.execute()
        depth = sum(int(n) for n in replies[: len(PRIORITY_SUFFIXES)])
        due_now, scheduled, waiting = (float(n) for n in replies[len(PRIORITY_SUFFIXES) :])
        return float(depth), due_now, scheduled, waiting


def _overdue_metrics(client: redis.Redis, keys: RedisKeys) -> Iterator[Metric]:
    """How long the most overdue waiting request has been due (its window, rate-limit slot,
    backoff or lease over) without being released: 0 in a healthy fleet, whose schedulers
    release a request within moments of its due time. For the alert on requests waiting
    past their window (deploy/prometheus/alerts.yml)."""
    try:
        seconds, micros = client.time()
        oldest = client.zrange(keys.due_index, 0, 0, withscores=True)
    except redis.RedisError as error:
        REDIS_UNREACHABLE.report(f"metrics: {redis_error_detail(error)}")
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
    except redis.RedisError:  # INFO refused (renamed by some managed services)
        logger.debug("could not read Redis's maxmemory-policy", exc_info=True)
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
    for bound in HISTOGRAM_BUCKETS[prefix]:
        running += raw.get(f"{prefix}_bucket|{bound}", 0.0)
        buckets.append((str(bound), running))
    buckets.append(("+Inf", raw.get(f"{prefix}_count|", 0.0)))
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], buckets, sum_value=raw.get(f"{prefix}_sum|", 0.0))
    return family


def build_registry(
    client: redis.Redis, keys: RedisKeys, queue: str, outage: TangoOutage | None = None
) -> CollectorRegistry:
    """A registry holding only the fleet's metrics (no per-process default collectors);
    `outage`: this process's (its memory answers when Redis does not)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisMetricsCollector(client, keys, queue, outage))
    return registry
