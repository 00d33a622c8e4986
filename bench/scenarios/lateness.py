"""Scenario 2: how late deferred resends go out, ours vs the naive autoretry peer.

M orders, each with k distinct resends queued at once; the orders' arrivals are spread evenly
over one window (a steady stream, not one burst every window). Every resend after an order's
first must wait for the window: its lateness is its arrival at Tango minus (the previous
resend's answer + W), from the sandbox's call log. Negative lateness is an early send (Tango
would refuse it); a 403.005 answer to one of our calls is a cooldown error of our own making.

The naive peer gets the same requests as Celery tasks (one per resend, all sent at once), with
`autoretry_for` on the cooldown error and `retry_backoff=True`, Celery's defaults otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import analysis
from bench.config import LatenessParams
from bench.harness import Stack
from bench.naive_app import NAIVE_TASK
from bench.scenarios.common import (
    Context,
    Item,
    ScenarioResult,
    distinct_fields,
    enqueue_ours,
    enqueue_peer,
    order_ids,
    wait_counter,
    wait_ours_finished,
)


def _paced(
    orders: Sequence[str], k: int, spread_seconds: float, submit: Callable[[list[Item]], float]
) -> float:
    """Submit each order's k resends at once, the orders spread evenly over `spread_seconds`."""
    started = time.monotonic()
    for index, order in enumerate(orders):
        due = started + index * spread_seconds / len(orders)
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        submit([(order, distinct_fields(order, j)) for j in range(k)])
    return time.monotonic() - started


def _run(ctx: Context, p: LatenessParams, kind: str) -> dict[str, Any]:
    orders = order_ids(p.orders)
    total = p.orders * p.resends_per_order
    with Stack() as stack:
        sandbox = ctx.sandbox(
            stack,
            orders,
            cooldown_seconds=p.window_seconds,
            latency_seconds=p.latency_seconds,
            expected_calls=total * (4 if kind == "naive" else 1),
        )
        settings = ctx.use_run_settings(
            f"lateness-{kind}",
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            WORKER_CONCURRENCY=str(p.concurrency),
        )
        key_prefix = settings["REDIS_KEY_PREFIX"]
        queue = settings["RESEND_QUEUE"]
        ctx.worker(stack, settings, concurrency=p.concurrency, peer=kind != "ours")
        before = ctx.probe.commandstats()
        if kind == "ours":
            _paced(orders, p.resends_per_order, p.window_seconds, enqueue_ours)
            timeout = 60 + 3 * p.resends_per_order * p.window_seconds
            wait_ours_finished(ctx.probe, key_prefix, timeout=timeout)
        else:
            _paced(
                orders,
                p.resends_per_order,
                p.window_seconds,
                lambda items: enqueue_peer(NAIVE_TASK, queue, items),
            )
            # Every task ends (sent, or given up after Celery's 3 retries) within ~2^4 s.
            wait_counter(ctx.probe, f"{queue}:done", total, timeout=120)
        after = ctx.probe.commandstats()
        time.sleep(0.2)
        calls = analysis.resend_calls(sandbox.calls())
        gave_up = int(ctx.probe.client.get(f"{queue}:gave-up") or 0)
    late = analysis.lateness(calls, p.window_seconds)
    values = [item.seconds for item in late]
    successes = analysis.sent(calls)
    redis_ops = sum(after.values()) - sum(before.values())
    start = min((float(call["received_at"]) for call in calls), default=0.0)
    return {
        "kind": kind,
        "calls": len(calls),
        "sent": len(successes),
        "lost": total - len(successes),
        "gave_up": gave_up,
        "cooldown_errors": analysis.cooldown_errors(calls),
        "early_sends": sum(1 for value in values if value < 0),
        "lateness": analysis.summary(values),
        "lateness_values": values,
        "makespan_seconds": analysis.span_seconds(calls),
        "redis_ops_per_resend": redis_ops / max(len(successes), 1),
        "timeline": [
            (
                str(call["referenceOrderID"]),
                float(call["received_at"]) - start,
                int(call["status"] or 0),
            )
            for call in calls
        ],
        "order_index": {order: index for index, order in enumerate(orders)},
    }


def run(ctx: Context, p: LatenessParams) -> ScenarioResult:
    ours = _run(ctx, p, "ours")
    ctx.say(
        f"ours: p50 {ours['lateness']['p50'] * 1000:.0f} ms, "
        f"p99 {ours['lateness']['p99'] * 1000:.0f} ms, early {ours['early_sends']}, "
        f"cooldown errors {ours['cooldown_errors']}, lost {ours['lost']}"
    )
    naive = _run(ctx, p, "naive")
    ctx.say(
        f"naive: p50 {naive['lateness']['p50'] * 1000:.0f} ms, "
        f"p99 {naive['lateness']['p99'] * 1000:.0f} ms, wasted calls {naive['cooldown_errors']}, "
        f"lost {naive['lost']} of {p.orders * p.resends_per_order}"
    )
    hidden = ("lateness_values", "timeline", "order_index")
    return ScenarioResult(
        metrics={
            "lateness_p50_s": ours["lateness"]["p50"],
            "lateness_p99_s": ours["lateness"]["p99"],
            "early_sends": ours["early_sends"],
            "self_inflicted_cooldowns": ours["cooldown_errors"],
            "naive_lateness_p99_s": naive["lateness"]["p99"],
            "naive_wasted_calls": naive["cooldown_errors"],
        },
        details={
            "ours": {key: value for key, value in ours.items() if key not in hidden},
            "naive": {key: value for key, value in naive.items() if key not in hidden},
        },
        series={
            "ours": ours["lateness_values"],
            "naive": naive["lateness_values"],
            "ours_timeline": ours["timeline"],
            "naive_timeline": naive["timeline"],
            "ours_orders": ours["order_index"],
            "naive_orders": naive["order_index"],
            "ours_summary": {key: ours[key] for key in ("sent", "lost", "cooldown_errors")},
            "naive_summary": {key: naive[key] for key in ("sent", "lost", "cooldown_errors")},
            "window_seconds": p.window_seconds,
        },
    )
