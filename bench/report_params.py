"""The benchmark report's lines on what each scenario ran with (its `params`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def params_lines(results: dict[str, Any]) -> list[str]:
    """One line per scenario that ran (makespan: one per regime), in the report's order."""
    params = results.get("params", {})
    return [
        line
        for scenario, lines in _SCENARIO_PARAMS.items()
        if scenario in params
        for line in lines(params[scenario])
    ]


def _overhead_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- overhead: {o['orders']:,} distinct orders, latency {o['latency_seconds']:g} s, "
        f"threads pool x {o['concurrency']}, {o['repeats']} repeat(s), median"
    ]


def _lateness_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- lateness: {o['orders']} orders x {o['resends_per_order']} resends, window "
        f"{o['window_seconds']:g} s, orders arriving evenly over one window, "
        f"threads x {o['concurrency']}"
    ]


def _makespan_params(o: dict[str, Any]) -> list[str]:
    lines = []
    for r in o["regimes"]:
        rate = f"{r['rate_limit']:g}/s" if r["rate_limit"] else "off"
        lines.append(
            f"- makespan {r['name']}: M={r['orders']}, k={r['resends_per_order']}, "
            f"W={r['window_seconds']:g} s, L={r['latency_seconds']:g} s, "
            f"C={r['concurrency']}, R={rate}: ideal {r['ideal_seconds']:.2f} s"
        )
    return lines


def _rate_limit_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- rate limit: backlog of {o['orders']} orders, R={o['rate_limit']:g}/s (enforced by "
        f"the sandbox too), latency {o['latency_seconds']:g} s"
    ]


def _parked_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- parked: {o['parked_requests']:,} parked requests for memory, "
        f"{o['idle_requests']:,} waiting for CPU over {o['idle_measure_seconds']:g} s"
    ]


def _redis_ops_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- Redis commands: {o['orders']:,} distinct orders (and {o['queued_orders']} orders x "
        f"2 for the queued path)"
    ]


def _deploy_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- deploy: backlog of {o['backlog_orders']} orders and {o['windowed_orders']} "
        f"orders waiting out a portal resend's window (W={o['window_seconds']:g} s), "
        f"R={o['rate_limit']:g}/s (sandbox: {o['sandbox_rate_limit']:g}/s), new worker "
        f"after {o['deploy_after_calls']} calls, then SIGTERM to the old one"
    ]


def _kill_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- kill: {o['orders']} orders x {o['requests_per_order']} requests, "
        f"W={o['window_seconds']:g} s, {o['slow_orders']} first calls in flight "
        f"({o['slow_call_seconds']:g} s after Tango acted), threads x {o['concurrency']}, "
        f"visibility timeout {o['visibility_timeout_seconds']} s, default lease"
    ]


def _webhook_params(o: dict[str, Any]) -> list[str]:
    return [
        f"- webhook: {o['webhooks']:,} signed webhooks for distinct orders per storm, "
        f"{o['senders']} keep-alive senders, {o['rounds']} rounds of each receiver in turn "
        f"(medians), {o['warmup']} warm-up webhooks first"
    ]


# The report's lines for each scenario's parameters, in this order (`profile` has none).
_SCENARIO_PARAMS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "overhead": _overhead_params,
    "lateness": _lateness_params,
    "makespan": _makespan_params,
    "rate_limit": _rate_limit_params,
    "parked": _parked_params,
    "redis_ops": _redis_ops_params,
    "deploy": _deploy_params,
    "kill": _kill_params,
    "webhook": _webhook_params,
}
