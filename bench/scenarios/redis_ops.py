"""Scenario 6: Redis commands per successful resend.

From `INFO commandstats` deltas around a run (everything: the producer's enqueue, the broker,
the worker's scripts and the commands inside them, the scheduler), divided by the resends sent.
commandstats is server-wide, so on a shared Redis other clients can add to it; the same run is
also counted with MONITOR for this database alone, split into commands clients sent (a
pipeline's commands count one by one) and commands run inside our Lua scripts. The plain Celery
task is counted the same way: what Celery itself costs per task.

Two workloads: distinct orders (one resend each, nothing waits), and orders with two resends
each (the second waits for the window: the FIFO, promotion and scheduler paths).
"""

from __future__ import annotations

import time
from typing import Any

from bench import analysis
from bench.config import RedisOpsParams
from bench.harness import CommandMonitor, Stack, commandstats_delta
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


def run(ctx: Context, p: RedisOpsParams) -> ScenarioResult:
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
        metrics={"redis_ops_per_resend": ours["ops_per_resend"]},
        details={"distinct_orders": ours, "queued_behind_another": queued, "plain_task": plain},
        series={"ours": ours, "queued": queued, "plain": plain},
    )
