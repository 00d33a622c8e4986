"""Durable before acting: the overhead ratio with REDIS_WAIT_REPLICAS=1.

As scenario 1 (`overhead`), on a primary and a `--replicaof` replica of the run's own
(tests/support/replicated_redis.py): N distinct resends queued beforehand, 0 ms latency, no
rate limit, one worker each with the same pool and concurrency. Ours waits for the replica
before each call (the gate's "go") and before each final status; the peer is the plain task
making the same call between the same two WAITs (`bench.plain_resend_durable`: a write and
`WAIT 1` before the call, a write and `WAIT 1` after). Both enqueue beforehand (ours waits
for the replica at each enqueue too: timed apart, as in `overhead`).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import analysis
from bench.config import DurableParams
from bench.harness import RedisProbe, Stack, use_settings, worker_settings
from bench.naive_app import DURABLE_PLAIN_TASK
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    distinct_fields,
    enqueue_ours,
    order_ids,
    prefix,
    wait_calls,
    wait_ours_finished,
)
from tests.support.broker import producer_broker
from tests.support.replicated_redis import ReplicatedRedis
from worker.queueing.app import app as our_app


def _run_once(ctx: Context, p: DurableParams, kind: str) -> dict[str, Any]:
    orders = order_ids(p.orders)
    items = [(order, distinct_fields(order, 0)) for order in orders]
    with Stack() as stack:
        sandbox = ctx.sandbox(stack, orders, cooldown_seconds=1.0, expected_calls=p.orders)
        settings = worker_settings(
            redis_url=ctx.probe.url,
            prefix=prefix(f"durable-{kind}"),
            base_url=sandbox.base_url,
            window_seconds=1.0,
            WORKER_CONCURRENCY=str(p.concurrency),
            REDIS_WAIT_REPLICAS="1",
            REDIS_WAIT_TIMEOUT_MS=str(p.wait_timeout_ms),
        )
        use_settings(settings)
        with producer_broker():
            started = time.perf_counter()
            if kind == "ours":
                enqueue_ours(items)
            else:
                for order, fields in items:
                    our_app.send_task(
                        DURABLE_PLAIN_TASK, args=[order, fields], queue=settings["RESEND_QUEUE"]
                    )
            enqueue_seconds = time.perf_counter() - started
        worker = ctx.worker(stack, settings, concurrency=p.concurrency, peer=kind != "ours")
        cpu_before = worker.cpu_seconds()
        wait_calls(sandbox, p.orders, timeout=600)
        if kind == "ours":
            wait_ours_finished(ctx.probe, settings["REDIS_KEY_PREFIX"], timeout=120)
        cpu_after = worker.cpu_seconds()
        calls = analysis.resend_calls(sandbox.calls())
    return {
        "kind": kind,
        "throughput_per_s": analysis.throughput(calls),
        "enqueue_per_s": p.orders / enqueue_seconds,
        "worker_cpu_ms_per_resend": 1000 * (cpu_after - cpu_before) / p.orders,
        "statuses": sorted({int(call["status"] or 0) for call in calls}),
    }


def run(ctx: Context, p: DurableParams) -> ScenarioResult:
    with ReplicatedRedis(ctx.log_dir / "durable-redis").start() as pair:
        own = Context(probe=RedisProbe(pair.url(0)), log_dir=ctx.log_dir, out_dir=ctx.out_dir)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}
        for repeat in range(p.repeats):
            for kind in ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours"):
                result = _run_once(own, p, kind)
                runs[kind].append(result)
                ctx.say(
                    f"{kind} (WAIT 1): {result['throughput_per_s']:.0f} resends/s, "
                    f"{result['worker_cpu_ms_per_resend']:.2f} ms worker CPU per resend"
                )
    paired = [
        mine["throughput_per_s"] / theirs["throughput_per_s"]
        for mine, theirs in zip(runs["ours"], runs["plain"], strict=True)
    ]
    return ScenarioResult(
        metrics={"overhead_ratio_wait1": statistics.median(paired)},
        details={
            "overhead_ratio_wait1_runs": paired,
            "ours_per_s": statistics.median(r["throughput_per_s"] for r in runs["ours"]),
            "plain_per_s": statistics.median(r["throughput_per_s"] for r in runs["plain"]),
            "ours_enqueue_per_s": statistics.median(r["enqueue_per_s"] for r in runs["ours"]),
            "runs": runs["ours"] + runs["plain"],
        },
    )
