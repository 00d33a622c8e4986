"""Scenario 4: how much of Tango's rate limit a backlog gets, and that it never exceeds it.

N resends of distinct orders are queued at once under a fleet rate limit R; the sandbox
enforces R as Tango does (at most R calls in any second, 429.008 beyond). Utilisation is the
calls per second Tango saw from the first call to the last, over R. `calls_over_limit` counts
the calls the sandbox refused for the rate limit, and is cross-checked against the arrival
times (calls beyond R in any one-second window).
"""

from __future__ import annotations

import itertools
import time

from bench import analysis
from bench.config import RateLimitParams
from bench.harness import Stack
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    distinct_fields,
    enqueue_ours,
    order_ids,
    wait_ours_finished,
)
from worker.state.gate import RATE_HEADROOM


def run(ctx: Context, p: RateLimitParams) -> ScenarioResult:
    orders = order_ids(p.orders)
    with Stack() as stack:
        sandbox = ctx.sandbox(
            stack,
            orders,
            cooldown_seconds=p.window_seconds,
            rate_limit=p.rate_limit,
            latency_seconds=p.latency_seconds,
            expected_calls=p.orders,
        )
        settings = ctx.use_run_settings(
            "rate",
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            rate_limit=p.rate_limit,
            WORKER_CONCURRENCY=str(p.concurrency),
        )
        key_prefix = settings["REDIS_KEY_PREFIX"]
        enqueue_ours([(order, distinct_fields(order, 0)) for order in orders])
        ctx.worker(stack, settings, concurrency=p.concurrency)
        wait_ours_finished(ctx.probe, key_prefix, timeout=60 + 3 * p.orders / p.rate_limit)
        time.sleep(0.1)
        calls = analysis.resend_calls(sandbox.calls())
        refused = sandbox.stats()["rate_limited"]
    arrivals = [float(call["received_at"]) for call in calls]
    accepted = [float(call["received_at"]) for call in calls if call["status"] != 429]
    span = max(arrivals) - min(arrivals)
    achieved = (len(calls) - 1) / span if span > 0 else float("nan")
    utilisation = achieved / p.rate_limit
    start = min(arrivals)
    gaps = [later - earlier for earlier, later in itertools.pairwise(accepted)]
    ctx.say(
        f"{achieved:.2f} calls/s of {p.rate_limit:g} allowed = {utilisation:.3f}; "
        f"refused by the sandbox: {refused}"
    )
    return ScenarioResult(
        metrics={"rate_limit_utilisation": utilisation, "calls_over_limit": refused},
        details={
            "achieved_calls_per_s": achieved,
            "calls": len(calls),
            "sent": len(analysis.sent(calls)),
            "span_seconds": span,
            # At most 1/RATE_HEADROOM by design: tango-resend spaces its slots that much wider
            # than the limit.
            "design_ceiling": 1 / RATE_HEADROOM,
            "calls_over_limit_by_arrival_times": analysis.sliding_window_excess(
                arrivals, p.rate_limit
            ),
            "gap_ms": {
                key: 1000 * value
                for key, value in analysis.summary(gaps).items()
                if key != "count" and gaps
            },
        },
        series={
            "per_second": analysis.per_bin(arrivals, start, 1.0),
            "arrivals": [moment - start for moment in arrivals],
            "refused": [
                float(call["received_at"]) - start for call in calls if call["status"] == 429
            ],
            "rate_limit": p.rate_limit,
        },
    )
