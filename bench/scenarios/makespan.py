"""Scenario 3: completion time of M orders x k resends against the ideal bound.

ideal = max((k-1)*W + L, M*k*L/C, M*k/R): the last of an order's k resends cannot go out before
k-1 windows and one call; C threads cannot make M*k calls of L seconds faster than M*k*L/C;
a rate limit R cannot pass M*k calls faster than M*k/R. Each regime is run so that a different
term is the largest. The queue is filled first, then the worker started; the makespan is from
the first call's arrival at Tango to the last resend's answer. The sandbox enforces R too.
`makespan_ratio` is the worst regime's measured / ideal.
"""

from __future__ import annotations

import time
from typing import Any

from bench import analysis
from bench.config import MakespanParams, MakespanRegime
from bench.harness import Stack
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    distinct_fields,
    enqueue_ours,
    order_ids,
    wait_ours_finished,
)


def _run(ctx: Context, regime: MakespanRegime) -> dict[str, Any]:
    orders = order_ids(regime.orders)
    total = regime.orders * regime.resends_per_order
    items = [
        (order, distinct_fields(order, j))
        for j in range(regime.resends_per_order)
        for order in orders
    ]
    with Stack() as stack:
        sandbox = ctx.sandbox(
            stack,
            orders,
            cooldown_seconds=regime.window_seconds,
            rate_limit=regime.rate_limit,
            latency_seconds=regime.latency_seconds,
            expected_calls=total,
        )
        settings = ctx.use_run_settings(
            f"makespan-{regime.name}",
            base_url=sandbox.base_url,
            window_seconds=regime.window_seconds,
            rate_limit=regime.rate_limit,
            WORKER_CONCURRENCY=str(regime.concurrency),
        )
        key_prefix = settings["REDIS_KEY_PREFIX"]
        enqueue_ours(items)
        ctx.worker(stack, settings, concurrency=regime.concurrency)
        ideal = regime.ideal_seconds()
        wait_ours_finished(ctx.probe, key_prefix, timeout=60 + 4 * ideal)
        time.sleep(0.1)
        calls = analysis.resend_calls(sandbox.calls())
    successes = analysis.sent(calls)
    start = min(float(call["received_at"]) for call in calls)
    end = max(float(call["answered_at"]) for call in successes)
    measured = end - start
    return {
        "regime": regime.name,
        "ideal_seconds": ideal,
        "bound_terms": regime.bound_terms(),
        "measured_seconds": measured,
        "ratio": measured / ideal,
        "sent": len(successes),
        "expected": total,
        "calls": len(calls),
        "cooldown_errors": analysis.cooldown_errors(calls),
        "rate_limited": analysis.rate_limited(calls),
        "timeline": [
            (float(call["answered_at"]) - start, index + 1)
            for index, call in enumerate(sorted(successes, key=lambda c: c["answered_at"]))
        ],
    }


def run(ctx: Context, p: MakespanParams) -> ScenarioResult:
    results = []
    for regime in p.regimes:
        result = _run(ctx, regime)
        results.append(result)
        ctx.say(
            f"{regime.name}: {result['measured_seconds']:.2f} s vs ideal "
            f"{result['ideal_seconds']:.2f} s = {result['ratio']:.3f} "
            f"(sent {result['sent']}/{result['expected']}, 429s {result['rate_limited']}, "
            f"403.005s {result['cooldown_errors']})"
        )
    worst = max(results, key=lambda result: float(result["ratio"]))
    return ScenarioResult(
        metrics={"makespan_ratio": worst["ratio"]},
        details={
            "worst_regime": worst["regime"],
            "regimes": [
                {key: value for key, value in result.items() if key != "timeline"}
                for result in results
            ],
        },
        series={"regimes": results},
    )
