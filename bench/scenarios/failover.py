"""A Redis failover under load: what is lost, what is resent twice, how soon calls resume.

A Sentinel set of the run's own (a primary, two replicas, three `redis-server --sentinel`;
tests/support/redis_topology.py and failover_run.py), one worker (threads x 8) and the webhook
receiver pointed at the sentinels, REDIS_WAIT_REPLICAS=1. Webhooks (one every 0.25 s, each
retried under its webhook-id after a 503) and batches as `enqueue --file` sends them (3 rows a
second, refused rows sent again under their idempotency keys) arrive; every Tango call is slow
(Tango acts, then answers 1 s later), so calls are in flight when the primary is SIGKILLed.
The load goes on for a few seconds after a sentinel promotes a replica; the dead node is
restarted and rejoins as a replica.

`failover_lost`: requests that got a 202 or an id and did not end `sent`. `failover_duplicates`:
resends Tango made beyond the first of a request. `failover_resume_s`: from the promotion to
the first call to Tango after it. With `also_without_wait`, the same run with
REDIS_WAIT_REPLICAS=0 is in the details (`without_wait`), where docs/guarantees.md says a
loss or a duplicate may remain.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from bench.config import FailoverParams
from bench.harness import Stack, use_settings, worker_settings
from bench.scenarios.common import Context, ScenarioResult, prefix
from tests.support.broker import producer_broker
from tests.support.failover_run import (
    FAILOVER_WEBHOOK_SECRET,
    FailoverFigures,
    FailoverLoad,
    run_failover,
)
from tests.support.processes import StartedProcesses
from tests.support.redis_topology import SentinelTopology


def _run_once(ctx: Context, p: FailoverParams, wait_replicas: int) -> FailoverFigures:
    load = FailoverLoad(
        orders=p.orders,
        slow_answer_seconds=p.slow_answer_seconds,
        load_seconds_before=p.load_seconds_before,
        load_seconds_after=p.load_seconds_after,
    )
    workdir = ctx.log_dir / f"failover-wait{wait_replicas}"
    with Stack() as stack, SentinelTopology(workdir / "redis") as ha:
        sandbox = ctx.sandbox(stack, [], cooldown_seconds=p.window_seconds)
        settings = worker_settings(
            redis_url=ha.url(0),
            prefix=prefix(f"failover-{wait_replicas}"),
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            REDIS_SENTINEL_MASTER=ha.master_name,
            REDIS_WAIT_REPLICAS=str(wait_replicas),
            WEBHOOK_SECRET=FAILOVER_WEBHOOK_SECRET,
            TANGO_TIMEOUT_SECONDS="3",
            TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
        )
        use_settings(settings)
        processes = StartedProcesses(workdir)
        try:
            with producer_broker():
                return run_failover(ha, settings, sandbox.control, processes, load)
        finally:
            processes.stop_all()


def _summary(figures: FailoverFigures) -> dict[str, Any]:
    data = asdict(figures)
    data["lost"] = len(figures.lost)
    data["inside_window"] = len(figures.inside_window)
    return data


def run(ctx: Context, p: FailoverParams) -> ScenarioResult:
    durable = _run_once(ctx, p, wait_replicas=1)
    ctx.say(
        f"WAIT 1: promised {durable.promised}, lost {len(durable.lost)}, duplicates "
        f"{durable.duplicates}, calls resumed {durable.resume_s:.1f}s after the promotion"
    )
    details: dict[str, Any] = {"with_wait": _summary(durable)}
    if p.also_without_wait:
        plain = _run_once(ctx, p, wait_replicas=0)
        ctx.say(
            f"WAIT 0: promised {plain.promised}, lost {len(plain.lost)}, duplicates "
            f"{plain.duplicates}"
        )
        details["without_wait"] = _summary(plain)
    return ScenarioResult(
        metrics={
            "failover_lost": len(durable.lost),
            "failover_duplicates": durable.duplicates,
            "failover_resume_s": durable.resume_s if math.isfinite(durable.resume_s) else None,
        },
        details=details,
    )
