"""Scenario 9: how soon what a SIGKILLed worker left behind runs again.

M orders x k distinct requests, window W, the fleet's default rate limit (1 call/s; the
sandbox enforces 1 call in any second), one worker (threads x C). The first call of the first
few orders stalls `slow_call_seconds` after Tango acted (the sandbox's `delay_phase="after"`
fault), so those calls are in flight at the kill, while other requests wait in the due index
for their windows or rate slots. Every wait is in Redis, and a worker takes one message per
thread (prefetch 1, acks late), so what a SIGKILL can strand outside a call is a task the
worker has begun but is not calling Tango for: a run waiting in-thread for its rate slot (it
wakes 50 ms before it) or passing the gate. The kill is timed for such a moment (Redis is
polled for a request whose task message a worker has taken (its dispatch number is no longer
in `dispatched`: the run consumed it) and which is neither calling nor final, with a fresh lease
as its due score), within `catch_held_seconds` after the slow calls are in
flight, else it happens then anyway (`details.caught_held_request` says which). A replacement
starts under a new name. The visibility timeout is the production one (300 s), so the broker's
redelivery cannot be what recovers anything; the lease is the default (`RESEND_LEASE_SECONDS`).

Right after the kill, Redis is read for every request: calling Tango (`calling_until` after
the kill: in flight), begun by the dead worker outside a call (`held_by_dead_worker`), parked in
the due index, waiting for its turn, finished. For every unfinished request that was not in
flight and was at the head of its order, recovery = its first call after the kill - (the kill,
or the end of the wait it still had if later: the order's last answer before the kill + W, its
reserved rate slot). `kill_recovery_s` is the largest; the in-flight requests are reported apart
(they are released once their call must be over, twice the connect and read timeouts, and the
replacement probes Tango: issue 16). `duplicate_resends` counts requests Tango resent twice
(goal 0 where the probe's proof is conclusive: the slow calls resend `slow_process_seconds`
into the call); `details.probes` counts the probes, `details.probe_answers` their answers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench import analysis
from bench.config import KillParams
from bench.harness import Stack, start_our_worker, wait_for
from bench.scenarios.common import (
    Context,
    Item,
    ScenarioResult,
    distinct_fields,
    enqueue_ours_ids,
    final_statuses,
    order_ids,
    wait_ours_finished,
)
from worker.core.settings import Settings
from worker.state.keys import RedisKeys


def _taken_task_ids(ctx: Context, keys: RedisKeys, request_ids: list[str]) -> set[str]:
    """Requests whose task message a worker took: a run consumed its dispatch number (resend
    tasks leave no trace in kombu's `unacked` hash; worker/queueing/transport.py)."""
    waiting = ctx.probe.client.hmget(keys.dispatched, request_ids) if request_ids else []
    return {
        request_id for request_id, number in zip(request_ids, waiting, strict=True) if not number
    }


def _snapshot(
    ctx: Context, keys: RedisKeys, request_ids: list[str], lease: float
) -> dict[str, Any]:
    """What Redis says of every request right after the kill."""
    now = ctx.probe.now()
    held = _taken_task_ids(ctx, keys, request_ids)
    pipe = ctx.probe.client.pipeline()
    for request_id in request_ids:
        pipe.hmget(keys.record(request_id), "status", "calling_until")
        pipe.zscore(keys.due_index, request_id)
        pipe.zscore(keys.rate_reservations, request_id)
    replies = pipe.execute()
    state: dict[str, Any] = {}
    for index, request_id in enumerate(request_ids):
        (status, calling_until), score, slot = replies[3 * index : 3 * index + 3]
        calling = float(calling_until) if calling_until else 0.0
        if status in ("sent", "failed", "cancelled"):
            kind = "finished"
        elif calling > now:
            kind = "in_flight"
        elif request_id in held and score is not None and now + lease - 2 < score <= now + lease:
            kind = "held_by_dead_worker"  # begun (a fresh lease), not calling
        elif score is None:
            kind = "unscheduled"
        elif score == float("inf"):
            kind = "waiting_for_turn"
        elif score > now:
            kind = "parked"
        else:
            kind = "due"
        state[request_id] = {
            "kind": kind,
            "status": status,
            "calling_until_in": calling - now if calling else None,
            "due_in": None if score is None or score == float("inf") else score - now,
            "message_held": request_id in held,
            # The rate slot it had reserved (epoch seconds, Redis's clock = this host's).
            "rate_slot": float(slot) / 1000 if slot is not None else None,
        }
    return state


def _held_outside_a_call(
    ctx: Context, keys: RedisKeys, request_ids: list[str], lease: float
) -> bool:
    """The worker holds a task it has begun (due score = a fresh lease) and is not calling for."""
    held = sorted(_taken_task_ids(ctx, keys, request_ids))
    if not held:
        return False
    pipe = ctx.probe.client.pipeline()
    pipe.time()
    for request_id in held:
        pipe.hmget(keys.record(request_id), "status", "calling_until")
        pipe.zscore(keys.due_index, request_id)
    seconds, micros, *replies = _flatten_time(pipe.execute())
    now = int(seconds) + int(micros) / 1e6
    for index in range(len(held)):
        (status, calling_until), score = replies[2 * index], replies[2 * index + 1]
        if status in (None, "sent", "failed", "cancelled"):
            continue
        if calling_until and float(calling_until) > now:
            continue
        if score is not None and now + lease - 2 < score <= now + lease:
            return True
    return False


def _flatten_time(replies: list[Any]) -> list[Any]:
    (seconds, micros), *rest = replies
    return [seconds, micros, *rest]


@dataclass(frozen=True)
class _Run:
    """What one run saw: every request's state in Redis right after the kill, and every call
    to Tango until all requests were final."""

    request_of: dict[tuple[str, int], str]  # (order, its n-th request) -> request id
    killed_at: float
    state: dict[str, dict[str, Any]]  # request id -> `_snapshot`'s view of it
    caught_held_request: bool
    rescuer_ready: float  # seconds from the kill until the replacement was ready
    statuses: dict[str, int]
    calls: list[dict[str, Any]]


def run(ctx: Context, p: KillParams) -> ScenarioResult:
    orders = order_ids(p.orders)
    # The slow orders come first, so their calls take the first rate slots and are in flight
    # while the rest of the stream goes on.
    slow = set(orders[: p.slow_orders])
    lease = float(Settings.model_fields["resend_lease_seconds"].default)
    email_of: dict[str, tuple[str, int]] = {}
    items = []
    for index in range(p.requests_per_order):
        for order in orders:
            fields = distinct_fields(order, index)
            email_of[fields["newEmail"]] = (order, index)
            items.append((order, fields))
    seen = _kill_and_replace(ctx, p, orders, slow, lease, email_of, items)
    calls_of, by_order = _calls_by_request_and_order(seen, email_of)
    recovered, in_flight = _measure(p, seen, calls_of, by_order)
    return _result(ctx, p, orders, slow, lease, seen, calls_of, recovered, in_flight)


def _kill_and_replace(
    ctx: Context,
    p: KillParams,
    orders: list[str],
    slow: set[str],
    lease: float,
    email_of: dict[str, tuple[str, int]],
    items: list[Item],
) -> _Run:
    """Start a worker, SIGKILL it at a moment it holds a task outside a call (or once
    `catch_held_seconds` are over), start a replacement, and wait for every request."""
    with Stack() as stack:
        sandbox = ctx.sandbox(
            stack, orders, cooldown_seconds=p.window_seconds, rate_limit=p.sandbox_rate_limit
        )
        for order in slow:
            sandbox.control.inject_fault(
                order,
                delay_seconds=p.slow_call_seconds,
                delay_phase="after",
                process_seconds=p.slow_process_seconds,
                count=1,
            )
        settings = ctx.use_run_settings(
            "kill",
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            rate_limit=p.rate_limit,
            WORKER_CONCURRENCY=str(p.concurrency),
            BROKER_VISIBILITY_TIMEOUT_SECONDS=str(p.visibility_timeout_seconds),
            # A call cut off by the kill is released to the replacement once it must be over
            # (2 x (connect + read)) and its run's lease (15 s) is out; the probe proves
            # anything only inside Tango's window, so these fit inside `window_seconds`.
            TANGO_TIMEOUT_SECONDS=f"{p.read_timeout_seconds:g}",
            TANGO_CONNECT_TIMEOUT_SECONDS=f"{p.connect_timeout_seconds:g}",
        )
        keys = RedisKeys(settings["REDIS_KEY_PREFIX"])
        doomed = start_our_worker(
            settings, ctx.log_dir, ctx.probe, concurrency=p.concurrency, name="doomed"
        )
        stack.push(doomed, doomed.stop)
        ids = enqueue_ours_ids(items)
        request_of = {(order, index): ids[n] for n, (order, index) in enumerate(email_of.values())}

        def slow_in_flight() -> bool:
            calls = analysis.resend_calls(sandbox.calls(), slow)
            return len(calls) >= len(slow) and all(c["answered_at"] is None for c in calls)

        wait_for(slow_in_flight, timeout=30, what="the slow calls to be in flight")
        caught = _wait_for_a_held_task(ctx, keys, ids, lease, p.catch_held_seconds)
        killed_at = doomed.kill()
        state = _snapshot(ctx, keys, ids, lease)
        rescuer = start_our_worker(
            settings, ctx.log_dir, ctx.probe, concurrency=p.concurrency, name="rescuer"
        )
        stack.push(rescuer, rescuer.stop)
        rescuer_ready = time.time() - killed_at
        hold = p.window_seconds + 30  # the window hold of a call in flight, at most
        wait_ours_finished(
            ctx.probe,
            keys.prefix,
            timeout=60 + hold + p.requests_per_order * (p.window_seconds + p.orders / p.rate_limit),
        )
        time.sleep(0.2)
        statuses = final_statuses(ids)
        calls = analysis.resend_calls(sandbox.calls())
    return _Run(request_of, killed_at, state, caught, rescuer_ready, statuses, calls)


def _wait_for_a_held_task(
    ctx: Context, keys: RedisKeys, ids: list[str], lease: float, seconds: float
) -> bool:
    """Whether the worker came to hold a task outside a call within `seconds`."""
    try:
        wait_for(
            lambda: _held_outside_a_call(ctx, keys, ids, lease),
            timeout=seconds,
            interval=0.002,
            what="a task begun outside a call",
        )
    except TimeoutError:
        return False
    return True


def _calls_by_request_and_order(
    seen: _Run, email_of: dict[str, tuple[str, int]]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """The calls of each request (told apart by their distinct email), and of each order."""
    calls_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in seen.calls:
        email = (call.get("body") or {}).get("newEmail")
        if email in email_of:
            calls_of[seen.request_of[email_of[email]]].append(call)
        by_order[str(call["referenceOrderID"])].append(call)
    return calls_of, by_order


def _measure(
    p: KillParams,
    seen: _Run,
    calls_of: dict[str, list[dict[str, Any]]],
    by_order: dict[str, list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(recovered, in flight): how soon each request called Tango again after the kill. A
    request behind another of its order is left out: its wait is measured through that one."""
    killed_at, state, request_of = seen.killed_at, seen.state, seen.request_of
    recovered: list[dict[str, Any]] = []
    in_flight: list[dict[str, Any]] = []
    for (order, index), request_id in request_of.items():
        info = state[request_id]
        after = [c for c in calls_of[request_id] if float(c["received_at"]) > killed_at]
        if info["kind"] == "finished" or not after:
            continue
        first_after = float(after[0]["received_at"])
        if info["kind"] == "in_flight":
            own = [c for c in calls_of[request_id] if float(c["received_at"]) <= killed_at]
            started = float(own[-1]["received_at"]) if own else killed_at
            in_flight.append(
                {
                    "order": order,
                    "request": index,
                    "call_after_kill_seconds": first_after - killed_at,
                    "after_its_window_seconds": first_after - (started + p.window_seconds),
                    "after_its_hold_seconds": first_after - killed_at - info["calling_until_in"],
                    "status_after": after[0]["status"],
                }
            )
            continue
        ahead = [
            request_of[(order, j)]
            for j in range(index)
            if state[request_of[(order, j)]]["kind"] != "finished"
        ]
        if ahead:
            continue  # its wait is the request ahead of it: measured through that one
        before = [
            c
            for c in by_order[order]
            if float(c["received_at"]) <= killed_at and c["status"] == 201
        ]
        window_end = float(before[-1]["answered_at"]) + p.window_seconds if before else 0.0
        due = max(killed_at, window_end, info["rate_slot"] or 0.0)
        recovered.append(
            {
                "order": order,
                "request": index,
                "kind": info["kind"],
                "message_held": info["message_held"],
                "wait_left_seconds": due - killed_at,
                "recovery_seconds": first_after - due,
                "status_after": after[0]["status"],
            }
        )
    return recovered, in_flight


def _result(
    ctx: Context,
    p: KillParams,
    orders: list[str],
    slow: set[str],
    lease: float,
    seen: _Run,
    calls_of: dict[str, list[dict[str, Any]]],
    recovered: list[dict[str, Any]],
    in_flight: list[dict[str, Any]],
) -> ScenarioResult:
    killed_at, calls = seen.killed_at, seen.calls
    # A request resent twice (two 201s): its first call was cut off by the kill and the
    # replacement's probe could not prove it had resent (issue 16). Probes are counted apart.
    duplicates = sum(
        max(0, sum(1 for c in own if c["status"] == 201) - 1) for own in calls_of.values()
    )
    probes = [c for c in calls if c.get("probe")]
    probe_statuses: dict[str, int] = defaultdict(int)
    for call in probes:
        probe_statuses[str(call["i18nKey"] or call["status"])] += 1
    worst = max(recovered, key=lambda r: r["recovery_seconds"]) if recovered else None
    recovery = worst["recovery_seconds"] if worst else float("nan")
    kinds: dict[str, int] = defaultdict(int)
    for info in seen.state.values():
        kinds[info["kind"]] += 1
    ctx.say(
        f"at the kill: {dict(kinds)}; recovery {recovery:.3f} s "
        f"({worst['kind'] if worst else '-'}; {len(recovered)} measured); replacement ready "
        f"{seen.rescuer_ready:.1f} s after the kill; in flight: "
        + ", ".join(f"{r['call_after_kill_seconds']:.1f} s" for r in in_flight)
        + f"; statuses {seen.statuses}; duplicate resends {duplicates}, probes {len(probes)}"
    )
    return ScenarioResult(
        metrics={"kill_recovery_s": recovery, "duplicate_resends": duplicates},
        details={
            "duplicate_resends": duplicates,
            "probes": len(probes),
            "probe_answers": dict(probe_statuses),
            "at_kill": dict(kinds),
            "measured_requests": len(recovered),
            "recovery_max_by_kind_seconds": _worst_by_kind(recovered),
            "worst": worst,
            "recovered": sorted(recovered, key=lambda r: -r["recovery_seconds"]),
            "in_flight": in_flight,
            "in_flight_call_inside_window": sum(
                1 for r in in_flight if r["after_its_window_seconds"] < 0
            ),
            "replacement_ready_seconds": seen.rescuer_ready,
            "lease_seconds": lease,
            "caught_held_request": seen.caught_held_request,
            "calls": len(calls),
            "cooldown_errors": analysis.cooldown_errors(calls),
            "final_statuses": seen.statuses,
        },
        series={
            "calls": [
                (
                    float(c["received_at"]) - killed_at,
                    orders.index(str(c["referenceOrderID"])),
                    int(c["status"] or 0),
                )
                for c in calls
            ],
            "slow": sorted(orders.index(order) for order in slow),
            "rescuer_ready": seen.rescuer_ready,
            "recovery": worst["recovery_seconds"] + worst["wait_left_seconds"] if worst else None,
            "window_seconds": p.window_seconds,
        },
    )


def _worst_by_kind(recovered: list[dict[str, Any]]) -> dict[str, float]:
    """The longest recovery of each kind of request (parked, due, held by the dead worker…)."""
    by_kind: dict[str, float] = {}
    for item in recovered:
        kind = item["kind"]
        by_kind[kind] = max(by_kind.get(kind, float("-inf")), item["recovery_seconds"])
    return by_kind
