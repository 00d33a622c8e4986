"""Scenario 8: a rate-limited backlog across a rolling deploy.

A backlog of N requests for distinct orders under the fleet's default rate limit (1 call/s; the
sandbox enforces 1 call in any second, as Tango does at 1 TPS), plus a few orders resent in
Tango's portal just before, whose first call meets the window (403.005) and which then wait it
out in Redis's due index. One worker runs; once `deploy_after_calls` calls reached Tango a new
worker starts under a new name, and once it is ready the old one gets SIGTERM (Celery's warm
shutdown). A backlog takes one slot per interval (1.03 s at 1/s), so every pause between
consecutive calls longer than that is time the fleet lost.

Figures (sandbox clock, i.e. Tango's view; the deploy moments are this process's clock, the
same host): `deploy_pause_max_s` = the longest gap between consecutive calls over the whole
backlog; details: the gap around the SIGTERM and the new worker's start, the worst lateness
of any call past its slot (k-th call vs the first + k x interval), the calls per order.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict

from bench import analysis
from bench.config import DeployParams
from bench.harness import Stack, wait_for
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    distinct_fields,
    enqueue_ours_ids,
    final_statuses,
    order_ids,
    wait_ours_finished,
)
from worker.state.gate import RATE_HEADROOM


def _gap_containing(arrivals: list[float], moment: float) -> dict[str, float] | None:
    """The gap between the last call before `moment` and the first after it."""
    for earlier, later in itertools.pairwise(arrivals):
        if earlier <= moment < later:
            return {
                "seconds": later - earlier,
                "from_moment_to_next_call": later - moment,
                "at": earlier - arrivals[0],
            }
    return None


def run(ctx: Context, p: DeployParams) -> ScenarioResult:
    orders = order_ids(p.backlog_orders + p.windowed_orders)
    windowed, backlog = orders[: p.windowed_orders], orders[p.windowed_orders :]
    interval = RATE_HEADROOM / p.rate_limit
    moments: dict[str, float] = {}
    with Stack() as stack:
        sandbox = ctx.sandbox(
            stack, orders, cooldown_seconds=p.window_seconds, rate_limit=p.sandbox_rate_limit
        )
        settings = ctx.use_run_settings(
            "deploy",
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            rate_limit=p.rate_limit,
            WORKER_CONCURRENCY=str(p.concurrency),
        )
        old = ctx.worker(stack, settings, concurrency=p.concurrency, name="old")
        for order in windowed:
            sandbox.control.portal_resend(order)
        moments["enqueued"] = time.time()
        ids = enqueue_ours_ids([(order, distinct_fields(order, 0)) for order in windowed + backlog])
        wait_for(
            lambda: sandbox.accepted() >= p.deploy_after_calls,
            timeout=30 + 3 * p.deploy_after_calls * interval,
            what=f"{p.deploy_after_calls} calls before the deploy",
        )
        moments["new_worker_starting"] = time.time()
        ctx.worker(stack, settings, concurrency=p.concurrency, name="new")
        moments["new_worker_ready"] = time.time()
        moments["sigterm"] = old.terminate()
        old.process.wait(timeout=60)
        moments["old_worker_exited"] = time.time()
        restored = old.log().count("Restoring")
        calls_total = len(orders) + p.windowed_orders
        wait_ours_finished(
            ctx.probe, settings["REDIS_KEY_PREFIX"], timeout=60 + 3 * calls_total * interval
        )
        time.sleep(0.2)
        statuses = final_statuses(ids)
        calls = analysis.resend_calls(sandbox.calls())
        refused = sandbox.stats()["rate_limited"]

    arrivals = [float(call["received_at"]) for call in calls]
    first = arrivals[0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    late = [arrival - (first + k * interval) for k, arrival in enumerate(arrivals)]
    worst_k = max(range(len(late)), key=late.__getitem__)
    around = {
        name: _gap_containing(arrivals, moments[name])
        for name in ("new_worker_starting", "new_worker_ready", "sigterm", "old_worker_exited")
    }
    deploy_span = [
        later - earlier
        for earlier, later in itertools.pairwise(arrivals)
        if later >= moments["new_worker_starting"] and earlier <= moments["old_worker_exited"]
    ]
    by_order: dict[str, list[int]] = defaultdict(list)
    for call in calls:
        by_order[str(call["referenceOrderID"])].append(int(call["status"] or 0))
    unexpected = {
        order: statuses_
        for order, statuses_ in by_order.items()
        if statuses_ != ([403, 201] if order in windowed else [201])
    }
    pause_max = max(gaps)
    worst_gap_k = gaps.index(pause_max)
    sigterm_gap = around["sigterm"]
    ctx.say(
        f"{len(calls)} calls, longest pause {pause_max:.3f} s (after call {worst_gap_k}, "
        f"{arrivals[worst_gap_k] - moments['sigterm']:+.2f} s from the SIGTERM); pause at the "
        f"SIGTERM {sigterm_gap['seconds'] if sigterm_gap else float('nan'):.3f} s; worst "
        f"lateness past its slot {late[worst_k]:.3f} s (call {worst_k}); old worker exited "
        f"{moments['old_worker_exited'] - moments['sigterm']:.1f} s after SIGTERM; refused "
        f"{refused}; statuses {statuses}"
    )
    return ScenarioResult(
        metrics={"deploy_pause_max_s": pause_max},
        details={
            "calls": len(calls),
            "interval_seconds": interval,
            "pause_max_after_call": worst_gap_k,
            "pause_max_at_from_sigterm_seconds": arrivals[worst_gap_k] - moments["sigterm"],
            "pause_at_deploy": around,
            "pause_max_during_deploy_seconds": max(deploy_span) if deploy_span else None,
            "lateness_past_slot_max_seconds": late[worst_k],
            "lateness_past_slot_max_call": worst_k,
            "lateness_past_slot_at_end_seconds": late[-1],
            "gap_seconds": analysis.summary(gaps),
            "moments_from_first_call_seconds": {
                name: moment - first for name, moment in moments.items()
            },
            "new_worker_start_seconds": moments["new_worker_ready"]
            - moments["new_worker_starting"],
            "old_worker_exit_seconds": moments["old_worker_exited"] - moments["sigterm"],
            "old_worker_restored_messages_lines": restored,
            "calls_refused_by_rate_limit": refused,
            "cooldown_errors": analysis.cooldown_errors(calls),
            "unexpected_call_sequences": unexpected,
            "final_statuses": statuses,
        },
        series={
            "arrivals": [arrival - first for arrival in arrivals],
            "statuses": [int(call["status"] or 0) for call in calls],
            "lateness": late,
            "interval": interval,
            "moments": {name: moment - first for name, moment in moments.items()},
        },
    )
