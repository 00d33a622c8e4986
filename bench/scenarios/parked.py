"""Scenarios 5 and 7: memory of parked requests, and a worker's CPU while requests wait.

Every request is for a distinct order whose window is held for a long time, as a resend made
just before would leave it (the window keys are written directly, with the owner
"bench-earlier-resend"; the window W is 30 minutes). So every request passes the gate, finds
its window held, and is parked in Redis's due index until the window ends: no task, no
countdown.

First `idle_requests` are queued and parked, and the worker's CPU is measured for a while
(no busy polling: it should be near zero, as with nothing waiting). Then more are queued up to
`parked_requests`, and the worker's resident memory and Redis's memory are measured: against
the same worker before any request (memory must not grow with parked requests), and against
Redis before the requests (bytes per parked request).

The two other ways a request waits are measured apart, with no worker running: queued (a new
request of an order with nothing ahead of it, its task message in the broker queue) and
waiting for its turn (a second request of an order, behind the first). The top-level
`redis_bytes_per_request` is the most of the three, counting our own keys; a queued request's
task message is Celery's (any Celery task has one), reported beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.config import ParkedParams
from bench.harness import CpuSampler, RedisProbe, Stack, use_settings, wait_for, worker_settings
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    distinct_fields,
    enqueue_ours,
    order_ids,
    prefix,
)
from worker.state.keys import RedisKeys

MB = 1024 * 1024
_SETTLE_SECONDS = 2.0


def _hold_windows(probe: RedisProbe, keys: RedisKeys, orders: Sequence[str], ms: int) -> None:
    for start in range(0, len(orders), 2000):
        with probe.client.pipeline(transaction=False) as pipe:
            for order in orders[start : start + 2000]:
                pipe.set(keys.order_window(order), "bench-earlier-resend", px=ms)
            pipe.execute()


def _parked(probe: RedisProbe, keys: RedisKeys, parked_after: float) -> int:
    """Requests parked until their window ends (scored past `parked_after`, Redis time): a
    request with a task in flight is scored at most the lost-task lease (10 min) ahead."""
    return int(probe.client.zcount(keys.due_index, parked_after, "+inf"))


def _keys_bytes(probe: RedisProbe, key_prefix: str) -> dict[str, int]:
    """MEMORY USAGE of our keys by kind (this database only, unlike INFO's used_memory)."""
    totals: dict[str, int] = {}
    batch: list[str] = []

    def flush() -> None:
        with probe.client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
        for key, size in zip(batch, sizes, strict=True):
            rest = key.removeprefix(key_prefix + ":")
            kind = rest.split(":", 1)[0]
            if kind == "order":
                kind = "order:" + rest.rsplit(":", 1)[-1]
            totals[kind] = totals.get(kind, 0) + int(size or 0)
        batch.clear()

    for key in probe.client.scan_iter(match=f"{key_prefix}:*", count=2000):
        batch.append(str(key))
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    return totals


def _bytes_per_request(probe: RedisProbe, submit: Callable[[], object], count: int) -> float:
    before = probe.used_memory()
    submit()
    return (probe.used_memory() - before) / count


def _waiting_without_a_worker(ctx: Context, p: ParkedParams) -> dict[str, float]:
    """Bytes per queued request and per request waiting for its turn (module docstring)."""
    count = p.idle_requests
    orders = order_ids(count)
    settings = worker_settings(
        redis_url=ctx.probe.url,
        prefix=prefix("waiting"),
        base_url="http://127.0.0.1:9",  # no worker runs: nothing calls Tango
        window_seconds=p.window_seconds,
    )
    use_settings(settings)
    queue = settings["RESEND_QUEUE"]
    queued = _bytes_per_request(
        ctx.probe,
        lambda: enqueue_ours([(order, distinct_fields(order, 0)) for order in orders]),
        count,
    )
    messages = int(ctx.probe.client.memory_usage(queue, samples=0) or 0)
    behind = _bytes_per_request(
        ctx.probe,
        lambda: enqueue_ours([(order, distinct_fields(order, 1)) for order in orders]),
        count,
    )
    message_bytes = messages / count
    return {
        "queued_bytes_per_request": queued,
        "queued_task_message_bytes": message_bytes,
        "queued_bytes_per_request_without_message": queued - message_bytes,
        "turn_bytes_per_request": behind,
        "broker_messages": int(ctx.probe.client.llen(queue)),
    }


def run(ctx: Context, p: ParkedParams) -> ScenarioResult:
    waiting = _waiting_without_a_worker(ctx, p)
    ctx.probe.flush()
    orders = order_ids(p.parked_requests)
    key_prefix = prefix("parked")
    keys = RedisKeys(key_prefix)
    probe = ctx.probe
    details: dict[str, Any] = {}
    with Stack() as stack:
        sandbox = ctx.sandbox(stack, [], cooldown_seconds=p.window_seconds)
        settings = worker_settings(
            redis_url=probe.url,
            prefix=key_prefix,
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            WORKER_CONCURRENCY=str(p.concurrency),
        )
        use_settings(settings)
        held_at = probe.now()
        _hold_windows(probe, keys, orders, int(p.window_seconds * 1000))
        parked_after = held_at + p.window_seconds - 300
        worker = ctx.worker(stack, settings, concurrency=p.concurrency)
        sampler = CpuSampler(
            {"worker": worker},
            interval=0.5,
            probes={"parked": lambda: _parked(probe, keys, parked_after)},
        ).start()
        stack.push(sampler, sampler.stop)
        time.sleep(_SETTLE_SECONDS)

        # The worker with nothing to do: its CPU and memory.
        empty_seconds = min(5.0, p.idle_measure_seconds / 2)
        cpu = worker.cpu_seconds()
        time.sleep(empty_seconds)
        details["idle_cpu_percent_nothing_waiting"] = (
            100 * (worker.cpu_seconds() - cpu) / empty_seconds
        )
        baseline_rss = worker.rss_bytes()
        baseline_redis = probe.used_memory()
        marks: list[tuple[float, str]] = [(time.time(), "requests queued")]

        # Phase 1: `idle_requests` parked, then the worker's CPU while they wait.
        started = time.monotonic()
        first = [(order, distinct_fields(order, 0)) for order in orders[: p.idle_requests]]
        enqueue_seconds = enqueue_ours(first)
        wait_for(
            lambda: _parked(probe, keys, parked_after) >= p.idle_requests,
            timeout=600,
            interval=0.25,
            what="the first requests to be parked",
        )
        details["park_per_s"] = p.idle_requests / (time.monotonic() - started)
        details["enqueue_per_s"] = p.idle_requests / enqueue_seconds
        time.sleep(_SETTLE_SECONDS)
        marks.append((time.time(), f"{p.idle_requests:,} parked: idle CPU measured"))
        cpu = worker.cpu_seconds()
        idle_started = time.monotonic()
        time.sleep(p.idle_measure_seconds)
        idle_cpu = 100 * (worker.cpu_seconds() - cpu) / (time.monotonic() - idle_started)
        details["rss_mb_idle_requests_parked"] = worker.rss_bytes() / MB
        ctx.say(
            f"{p.idle_requests:,} waiting: worker CPU {idle_cpu:.2f}% of a core "
            f"(nothing waiting: {details['idle_cpu_percent_nothing_waiting']:.2f}%)"
        )

        # Phase 2: up to `parked_requests`, then memory.
        marks.append((time.time(), "more requests queued"))
        rest = [(order, distinct_fields(order, 0)) for order in orders[p.idle_requests :]]
        enqueue_ours(rest)
        wait_for(
            lambda: _parked(probe, keys, parked_after) >= p.parked_requests,
            timeout=1200,
            interval=0.5,
            what="every request to be parked",
        )
        time.sleep(_SETTLE_SECONDS)
        marks.append((time.time(), f"{p.parked_requests:,} parked: memory measured"))
        parked_rss = worker.rss_bytes()
        parked_redis = probe.used_memory()
        queued_messages = int(probe.client.llen(settings["RESEND_QUEUE"]))
        by_kind = _keys_bytes(probe, key_prefix)
        time.sleep(1.0)
        sampler.stop()
        series = {
            "cpu": sampler.cpu_percent_series("worker"),
            "rss": [
                (sample.at, sample.rss_bytes.get("worker", 0) / MB) for sample in sampler.samples
            ],
            "parked": [
                (sample.at, sample.extra["parked"])
                for sample in sampler.samples
                if "parked" in sample.extra
            ],
            "marks": marks,
            "idle_requests": p.idle_requests,
            "parked_requests": p.parked_requests,
        }
    windows = by_kind.pop("window", 0)
    redis_delta = parked_redis - baseline_redis
    by_way = {
        "parked": redis_delta / p.parked_requests,
        "queued": waiting["queued_bytes_per_request_without_message"],
        "waiting_for_turn": waiting["turn_bytes_per_request"],
    }
    details["waiting_kinds"] = {**waiting, "bytes_per_request_by_kind": by_way}
    details.update(
        {
            "idle_rss_mb": baseline_rss / MB,
            "parked_rss_delta_mb": (parked_rss - baseline_rss) / MB,
            "redis_used_memory_delta_bytes": redis_delta,
            "redis_bytes_per_request_by_key_kind": {
                kind: size / p.parked_requests for kind, size in sorted(by_kind.items())
            },
            "redis_bytes_per_request_keys": sum(by_kind.values()) / p.parked_requests,
            "redis_window_key_bytes_per_order": windows / p.parked_requests,
            "messages_left_in_queue": queued_messages,
        }
    )
    ctx.say(
        f"{p.parked_requests:,} parked: worker RSS {parked_rss / MB:.1f} MB "
        f"(idle {baseline_rss / MB:.1f} MB), Redis {redis_delta / p.parked_requests:.0f} "
        f"bytes per request; queued {by_way['queued']:.0f} (+ Celery's message "
        f"{waiting['queued_task_message_bytes']:.0f}), waiting for its turn "
        f"{by_way['waiting_for_turn']:.0f}"
    )
    return ScenarioResult(
        metrics={
            "parked_rss_mb": parked_rss / MB,
            "redis_bytes_per_request": max(by_way.values()),
            "idle_cpu_percent": idle_cpu,
        },
        details=details,
        series=series,
    )
