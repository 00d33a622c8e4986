"""The benchmark report's lines on what each scenario ran with (its `params`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Lines = Callable[[dict[str, Any]], list[str]]


def params_lines(results: dict[str, Any]) -> list[str]:
    """One line per scenario that ran (makespan: one per regime), in the report's order."""
    params = results.get("params", {})
    return [
        line
        for scenario, lines in _SCENARIO_LINES.items()
        if scenario in params
        for line in lines(params[scenario])
    ]


def _line(template: str) -> Lines:
    """A scenario's one line: `template` filled in with its parameters (`str.format`)."""
    return lambda params: [template.format_map(params)]


def _makespan_lines(params: dict[str, Any]) -> list[str]:
    template = (
        "- makespan {name}: M={orders}, k={resends_per_order}, W={window_seconds:g} s, "
        "L={latency_seconds:g} s, C={concurrency}, R={rate}: ideal {ideal_seconds:.2f} s"
    )
    return [
        template.format_map({**regime, "rate": _rate(regime["rate_limit"])})
        for regime in params["regimes"]
    ]


def _rate(calls_per_second: float) -> str:
    return f"{calls_per_second:g}/s" if calls_per_second else "off"


# In the report's order; `profile` has no line.
_SCENARIO_LINES: dict[str, Lines] = {
    "overhead": _line(
        "- overhead: {orders:,} distinct orders, latency {latency_seconds:g} s, "
        "threads pool x {concurrency}, {repeats} repeat(s), median"
    ),
    "lateness": _line(
        "- lateness: {orders} orders x {resends_per_order} resends, window "
        "{window_seconds:g} s, orders arriving evenly over one window, threads x {concurrency}"
    ),
    "makespan": _makespan_lines,
    "rate_limit": _line(
        "- rate limit: backlog of {orders} orders, R={rate_limit:g}/s (enforced by the sandbox "
        "too), latency {latency_seconds:g} s"
    ),
    "parked": _line(
        "- parked: {parked_requests:,} parked requests for memory, {idle_requests:,} waiting "
        "for CPU over {idle_measure_seconds:g} s"
    ),
    "redis_ops": _line(
        "- Redis commands: {orders:,} distinct orders (and {queued_orders} orders x 2 for the "
        "queued path)"
    ),
    "cost": _line(
        "- cost: {orders:,} distinct orders, latency 0, no rate limit, threads x {concurrency}, "
        "{repeats} repeat(s) each of ours and the plain task in turns (medians), sampled every "
        "{interval_seconds:g} s with a GIL switch interval of {switch_interval_seconds:g} s, "
        "CPU between the answers at {from_fraction:.0%} and {to_fraction:.0%} of the run; "
        "before: bench/results/cost_before.json"
    ),
    "deploy": _line(
        "- deploy: backlog of {backlog_orders} orders and {windowed_orders} orders waiting out "
        "a portal resend's window (W={window_seconds:g} s), R={rate_limit:g}/s (sandbox: "
        "{sandbox_rate_limit:g}/s), new worker after {deploy_after_calls} calls, then SIGTERM "
        "to the old one"
    ),
    "kill": _line(
        "- kill: {orders} orders x {requests_per_order} requests, W={window_seconds:g} s, "
        "{slow_orders} first calls in flight ({slow_call_seconds:g} s after Tango acted), "
        "threads x {concurrency}, visibility timeout {visibility_timeout_seconds} s, "
        "default lease"
    ),
    "webhook": _line(
        "- webhook: {webhooks:,} signed webhooks for distinct orders per storm, {senders} "
        "keep-alive senders, {rounds} rounds of each receiver in turn (medians), {warmup} "
        "warm-up webhooks first"
    ),
    "bulk": _line(
        "- bulk: a CSV of {rows:,} rows (distinct orders, each with a new email address), "
        "`enqueue --file` and the plain `send_task` loop in turns, {repeats} of each, no "
        "worker running"
    ),
}
