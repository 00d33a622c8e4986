"""The pipeline profiled once: a worker under pyinstrument drains N resends of distinct orders.

The worker runs with the solo pool so that the consumer, the task and its outcome all run in
the thread pyinstrument samples. The report is written to `bench/results/profile.txt`.
"""

from __future__ import annotations

import time

from bench.config import ProfileParams
from bench.harness import Stack
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    distinct_fields,
    enqueue_ours,
    order_ids,
    wait_ours_finished,
)


def run(ctx: Context, p: ProfileParams) -> ScenarioResult:
    orders = order_ids(p.orders)
    report = ctx.out_dir / "profile.txt"
    with Stack() as stack:
        sandbox = ctx.sandbox(stack, orders, cooldown_seconds=1.5)
        settings = ctx.use_run_settings(
            "profile",
            base_url=sandbox.base_url,
            window_seconds=1.5,
        )
        key_prefix = settings["REDIS_KEY_PREFIX"]
        enqueue_ours([(order, distinct_fields(order, 0)) for order in orders])
        ctx.worker(
            stack,
            settings,
            concurrency=1,
            pool="solo",
            wrapper=["-m", "bench.profile_worker", f"--out={report}", "--"],
        )
        started = time.monotonic()
        wait_ours_finished(ctx.probe, key_prefix, timeout=300)
        elapsed = time.monotonic() - started
    # Stopping the worker wrote the report.
    ctx.say(f"profiled {p.orders} resends ({p.orders / elapsed:.0f}/s on the solo pool): {report}")
    return ScenarioResult(
        details={"resends": p.orders, "solo_pool_per_s": p.orders / elapsed, "report": report.name}
    )
