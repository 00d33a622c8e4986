"""Scenario 1: throughput of the whole pipeline over a plain Celery task making the same call.

Both drain a queue filled beforehand with N resends of N distinct orders, at 0 ms latency, no
rate limit, one worker process each with the same pool (threads) and concurrency. Throughput is
Tango's view: calls answered per second from the first call's arrival to the last's answer.
Enqueueing is timed separately (tango-resend validates and stores at enqueue; the plain
producer only sends a message).

The sandbox must not be the bottleneck: its own process's CPU is sampled during each run, and
a capacity probe makes the same call from the same number of threads without Celery.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import analysis
from bench.config import OverheadParams
from bench.harness import PLATFORM_KEY, PLATFORM_NAME, CpuSampler, Stack, child_env
from bench.naive_app import PLAIN_TASK
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    distinct_fields,
    enqueue_ours,
    enqueue_peer,
    order_ids,
    wait_calls,
    wait_ours_finished,
)


def _run_once(ctx: Context, p: OverheadParams, kind: str) -> dict[str, Any]:
    orders = order_ids(p.orders)
    items = [(order, distinct_fields(order, 0)) for order in orders]
    with Stack() as stack:
        sandbox = ctx.sandbox(
            stack,
            orders,
            cooldown_seconds=p.window_seconds,
            latency_seconds=p.latency_seconds,
            expected_calls=p.orders,
        )
        settings = ctx.use_run_settings(
            f"overhead-{kind}",
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            WORKER_CONCURRENCY=str(p.concurrency),
        )
        key_prefix = settings["REDIS_KEY_PREFIX"]
        if kind == "ours":
            enqueue_seconds = enqueue_ours(items)
        else:
            enqueue_seconds = enqueue_peer(PLAIN_TASK, settings["RESEND_QUEUE"], items)
        worker = ctx.worker(stack, settings, concurrency=p.concurrency, peer=kind != "ours")
        sampler = CpuSampler({"worker": worker, "sandbox": sandbox}).start()
        cpu_before, sandbox_before = worker.cpu_seconds(), sandbox.cpu_seconds()
        started = time.time()
        wait_calls(sandbox, p.orders, timeout=300)
        if kind == "ours":
            wait_ours_finished(ctx.probe, key_prefix, timeout=60)
        time.sleep(0.2)
        wall = time.time() - started
        cpu_after, sandbox_after = worker.cpu_seconds(), sandbox.cpu_seconds()
        sampler.stop()
        calls = analysis.resend_calls(sandbox.calls())
    span = analysis.span_seconds(calls)
    rate = analysis.throughput(calls)
    return {
        "kind": kind,
        "throughput_per_s": rate,
        "span_seconds": span,
        "statuses": sorted({int(call["status"] or 0) for call in calls}),
        "calls": len(calls),
        "enqueue_seconds": enqueue_seconds,
        "enqueue_per_s": p.orders / enqueue_seconds,
        "end_to_end_per_s": p.orders / (enqueue_seconds + span),
        "worker_cpu_ms_per_resend": 1000 * (cpu_after - cpu_before) / p.orders,
        "sandbox_cpu_ms_per_call": 1000 * (sandbox_after - sandbox_before) / p.orders,
        # Share of one core the sandbox used while the calls were being made.
        "sandbox_cpu_percent": 100 * (sandbox_after - sandbox_before) / max(span, 1e-9),
        "sandbox_cpu_percent_peak": max(
            (value for _, value in sampler.cpu_percent_series("sandbox")), default=0.0
        ),
        "wall_seconds": wall,
        "timeline": _completions(calls),
    }


def _completions(calls: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """(seconds since the first arrival, answers so far), thinned to at most ~400 points."""
    if not calls:
        return []
    start = min(float(call["received_at"]) for call in calls)
    answers = sorted(float(call["answered_at"]) - start for call in calls)
    step = max(1, len(answers) // 400)
    return [(answers[index], index + 1) for index in range(0, len(answers), step)]


def _capacity_probe(ctx: Context, p: OverheadParams) -> dict[str, float]:
    """The same call from `concurrency` threads with no Celery: what the sandbox can answer."""
    orders = order_ids(200)
    orders_file = ctx.log_dir / "capacity-orders.txt"
    orders_file.write_text("\n".join(orders))
    with Stack() as stack:
        # Window 0: every call is a real resend (201), like in the runs.
        sandbox = ctx.sandbox(stack, orders, cooldown_seconds=0.0)
        before = sandbox.cpu_seconds()
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                f"--base-url={sandbox.base_url}",
                f"--orders-file={orders_file}",
                f"--platform-name={PLATFORM_NAME}",
                f"--platform-key={PLATFORM_KEY}",
                f"--threads={p.concurrency}",
                f"--seconds={p.capacity_probe_seconds}",
            ],
            env=child_env({}),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        used = sandbox.cpu_seconds() - before
    result = json.loads(output.strip().splitlines()[-1])
    calls = float(result["calls"])
    return {
        "probe_calls_per_s": float(result["calls_per_s"]),
        "sandbox_cpu_ms_per_call": 1000 * used / max(calls, 1.0),
        # What one core of sandbox could answer at that cost per call.
        "sandbox_one_core_calls_per_s": calls / used if used > 0 else float("nan"),
    }


def run(ctx: Context, p: OverheadParams) -> ScenarioResult:
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}
    for repeat in range(p.repeats):
        for kind in ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours"):
            result = _run_once(ctx, p, kind)
            runs[kind].append(result)
            ctx.say(
                f"{kind}: {result['throughput_per_s']:.0f} resends/s, "
                f"{result['worker_cpu_ms_per_resend']:.2f} ms worker CPU per resend, "
                f"sandbox {result['sandbox_cpu_percent']:.0f}% of a core"
            )
    # capacity_probe_seconds=0: no probe (a second run of the same figure, on another Redis).
    capacity = {"probe_calls_per_s": float("nan"), "sandbox_one_core_calls_per_s": float("nan")}
    if p.capacity_probe_seconds > 0:
        capacity = _capacity_probe(ctx, p)
        ctx.say(
            f"sandbox capacity probe: {capacity['probe_calls_per_s']:.0f} calls/s "
            f"({capacity['sandbox_one_core_calls_per_s']:.0f}/s per sandbox core)"
        )

    def median(kind: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in runs[kind])

    ours, plain = median("ours", "throughput_per_s"), median("plain", "throughput_per_s")
    fastest = max(ours, plain)
    # Each repeat runs ours and the plain task back to back: their ratio is one measurement,
    # and the figure is the median of the repeats' (the spread says how stable it is).
    paired = [
        mine["throughput_per_s"] / theirs["throughput_per_s"]
        for mine, theirs in zip(runs["ours"], runs["plain"], strict=True)
    ]
    details = {
        "overhead_ratio_runs": paired,
        "overhead_ratio_spread": [min(paired), max(paired)],
        "overhead_ratio_of_medians": ours / plain,
        "ours_per_s": ours,
        "plain_per_s": plain,
        "overhead_ratio_end_to_end": median("ours", "end_to_end_per_s")
        / median("plain", "end_to_end_per_s"),
        # Less sensitive to other load on the machine than throughput: CPU per task.
        "overhead_ratio_cpu": median("plain", "worker_cpu_ms_per_resend")
        / median("ours", "worker_cpu_ms_per_resend"),
        "ours_per_s_range": [
            min(r["throughput_per_s"] for r in runs["ours"]),
            max(r["throughput_per_s"] for r in runs["ours"]),
        ],
        "plain_per_s_range": [
            min(r["throughput_per_s"] for r in runs["plain"]),
            max(r["throughput_per_s"] for r in runs["plain"]),
        ],
        "ours_enqueue_per_s": median("ours", "enqueue_per_s"),
        "plain_enqueue_per_s": median("plain", "enqueue_per_s"),
        "ours_worker_cpu_ms_per_resend": median("ours", "worker_cpu_ms_per_resend"),
        "plain_worker_cpu_ms_per_resend": median("plain", "worker_cpu_ms_per_resend"),
        "sandbox_cpu_percent_during_plain": median("plain", "sandbox_cpu_percent"),
        "sandbox_cpu_percent_during_ours": median("ours", "sandbox_cpu_percent"),
        "sandbox_capacity": capacity,
        # The sandbox is no bottleneck if it could answer several times the fastest run.
        "sandbox_headroom": capacity["probe_calls_per_s"] / fastest,
        "runs": [
            {key: value for key, value in run.items() if key != "timeline"}
            for kind in runs
            for run in runs[kind]
        ],
    }
    return ScenarioResult(
        metrics={"overhead_ratio": statistics.median(paired)},
        details=details,
        series={
            "ours": [run["throughput_per_s"] for run in runs["ours"]],
            "plain": [run["throughput_per_s"] for run in runs["plain"]],
            "ours_cpu": [run["worker_cpu_ms_per_resend"] for run in runs["ours"]],
            "plain_cpu": [run["worker_cpu_ms_per_resend"] for run in runs["plain"]],
            "ours_timeline": runs["ours"][0]["timeline"],
            "plain_timeline": runs["plain"][0]["timeline"],
            "capacity": capacity["probe_calls_per_s"],
        },
    )
