"""Scenario 6: Redis commands per successful resend.

From `INFO commandstats` deltas around a run (everything: the producer's enqueue, the broker,
the worker's scripts and the commands inside them, the scheduler), divided by the resends sent.
commandstats is server-wide, so on a shared Redis other clients can add to it; the same run is
also counted with MONITOR for this database alone, split into commands clients sent (a
pipeline's commands count one by one) and commands run inside our Lua scripts. The plain Celery
task is counted the same way: what Celery itself costs per task.

Two workloads: distinct orders (one resend each, nothing waits), and orders with two resends
each (the second waits for the window: the FIFO, promotion and scheduler paths).

Round trips: the straight path (enqueue, then one run: gate, call, outcome) is run in this
process, the producer's `submit_resend` and the task's own code (`ResendExecutor.run` in the
metrics batch the task opens), against the sandbox, and every redis-py round trip is counted
(a command, a script or a pipeline is one). The broker's fetch and acknowledgement of the task
message are Celery's own, the same for any task, and are not in the figure.
"""

from __future__ import annotations

import time
from typing import Any

from bench import analysis
from bench.config import RedisOpsParams
from bench.harness import CommandMonitor, Stack, commandstats_delta
from bench.naive_app import PLAIN_TASK
from bench.round_trips import RoundTrips
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


def _count(
    ctx: Context, p: RedisOpsParams, kind: str, orders: int, per_order: int
) -> dict[str, Any]:
    ids = order_ids(orders)
    items = [(order, distinct_fields(order, j)) for order in ids for j in range(per_order)]
    total = len(items)
    with Stack() as stack:
        sandbox = ctx.sandbox(stack, ids, cooldown_seconds=p.window_seconds)
        settings = ctx.use_run_settings(
            f"ops-{kind}",
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            WORKER_CONCURRENCY=str(p.concurrency),
        )
        key_prefix = settings["REDIS_KEY_PREFIX"]
        ctx.worker(stack, settings, concurrency=p.concurrency, peer=kind == "plain")
        time.sleep(0.5)
        monitor = CommandMonitor(ctx.probe.url).start()
        stack.push(monitor, monitor.stop)
        before = ctx.probe.commandstats()
        started = time.monotonic()
        if kind == "plain":
            enqueue_peer(PLAIN_TASK, settings["RESEND_QUEUE"], items)
            wait_calls(sandbox, total, timeout=120)
        else:
            enqueue_ours(items)
            wait_ours_finished(
                ctx.probe, key_prefix, timeout=120 + 2 * per_order * p.window_seconds
            )
        time.sleep(0.3)
        after = ctx.probe.commandstats()
        elapsed = time.monotonic() - started
        monitor.stop()
        sent = len(analysis.sent(analysis.resend_calls(sandbox.calls())))
    delta = commandstats_delta(before, after)
    # MONITOR's own connection shows up in commandstats as "monitor" only; nothing to remove.
    client = sum(monitor.client_commands.values())
    scripted = sum(monitor.script_commands.values())
    return {
        "kind": kind,
        "resends": total,
        "sent": sent,
        "seconds": elapsed,
        "ops_per_resend": sum(delta.values()) / max(sent, 1),
        "ops_per_resend_this_db": (client + scripted) / max(sent, 1),
        "client_commands_per_resend": client / max(sent, 1),
        "script_commands_per_resend": scripted / max(sent, 1),
        "by_command": {name: calls / max(sent, 1) for name, calls in delta.items()},
        "client_by_command": {
            name: calls / max(sent, 1) for name, calls in sorted(monitor.client_commands.items())
        },
        "script_by_command": {
            name: calls / max(sent, 1) for name, calls in sorted(monitor.script_commands.items())
        },
    }


def _round_trips(ctx: Context, p: RedisOpsParams) -> dict[str, Any]:
    """Round trips per resend on the straight path, by step (see the module's docstring)."""
    from worker.resend.executor import ResendExecutor
    from worker.resend.producer import submit_resend
    from worker.runtime import current_runtime

    warm_up, *ids = order_ids(p.orders + 1)
    with Stack() as stack:
        sandbox = ctx.sandbox(stack, [warm_up, *ids], cooldown_seconds=p.window_seconds)
        ctx.use_run_settings("ops-round-trips", base_url=sandbox.base_url, window_seconds=1.0)
        runtime = current_runtime()
        executor = ResendExecutor(runtime)
        # Start-up is not a resend's cost: connections opened, scripts loaded, clock synced.
        executor.run(submit_resend({"referenceOrderID": warm_up}).request_id)
        trips = RoundTrips()
        enqueue = runs = sent = 0
        with trips.counting():
            for order in ids:
                mark = trips.count
                request_id = submit_resend(
                    {"referenceOrderID": order, **distinct_fields(order, 0)}
                ).request_id
                enqueue += trips.since(mark)
                mark = trips.count
                with runtime.metrics.batch():
                    done = executor.run(request_id)
                runs += trips.since(mark)
                sent += done.status is not None and done.status.value == "sent"
    resends = len(ids)
    return {
        "resends": resends,
        "sent": sent,
        "per_resend": (enqueue + runs) / resends,
        "enqueue_per_resend": enqueue / resends,
        "run_per_resend": runs / resends,
    }


def run(ctx: Context, p: RedisOpsParams) -> ScenarioResult:
    trips = _round_trips(ctx, p)
    ctx.say(
        f"round trips per resend: {trips['per_resend']:.2f} "
        f"(enqueue {trips['enqueue_per_resend']:.2f}, run {trips['run_per_resend']:.2f})"
    )
    ours = _count(ctx, p, "ours", p.orders, 1)
    queued = _count(ctx, p, "ours", p.queued_orders, 2)
    plain = _count(ctx, p, "plain", p.orders, 1)
    for label, result in (("ours", ours), ("ours, queued", queued), ("plain task", plain)):
        ctx.say(
            f"{label}: {result['ops_per_resend']:.1f} commands per resend "
            f"({result['ops_per_resend_this_db']:.1f} on this database: "
            f"{result['client_commands_per_resend']:.1f} sent by clients + "
            f"{result['script_commands_per_resend']:.1f} inside scripts)"
        )
    return ScenarioResult(
        metrics={
            "redis_ops_per_resend": ours["ops_per_resend"],
            "redis_round_trips_per_resend": trips["per_resend"],
        },
        details={
            "distinct_orders": ours,
            "queued_behind_another": queued,
            "plain_task": plain,
            "round_trips": trips,
        },
        series={"ours": ours, "queued": queued, "plain": plain},
    )
