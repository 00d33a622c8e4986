"""latest.json and latest.md: the figures, their goals, the parameters and the machine."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.report_params import params_lines


@dataclass(frozen=True)
class Figure:
    key: str
    scenario: str
    label: str
    unit: str
    goal: str = ""
    check: Callable[[float], bool] | None = None


FIGURES = (
    Figure(
        "overhead_ratio",
        "overhead",
        "throughput over a plain Celery task (same call, pool, concurrency): median of the "
        "repeats, each side by side (`details.overhead.overhead_ratio_spread`)",
        "x",
        "≥ 0.9",
        lambda v: v >= 0.9,
    ),
    Figure(
        "overhead_ratio_tls",
        "overhead_tls",
        "the same on a Redis reached over TLS with an ACL user (`redis-server --tls-port`)",
        "x",
        "≥ 0.9",
        lambda v: v >= 0.9,
    ),
    Figure(
        "lateness_p50_s", "lateness", "deferred resend: arrival after its window opened, p50", "s"
    ),
    Figure(
        "lateness_p99_s",
        "lateness",
        "deferred resend: arrival after its window opened, p99",
        "s",
        "≤ 0.25",
        lambda v: v <= 0.25,
    ),
    Figure(
        "early_sends", "lateness", "resends before their window opened", "", "0", lambda v: v == 0
    ),
    Figure(
        "self_inflicted_cooldowns",
        "lateness",
        "our calls answered 403.005",
        "",
        "0",
        lambda v: v == 0,
    ),
    Figure(
        "naive_lateness_p99_s",
        "lateness",
        "naive autoretry peer: lateness p99 (of the resends it made at all)",
        "s",
    ),
    Figure("naive_wasted_calls", "lateness", "naive autoretry peer: calls answered 403.005", ""),
    Figure(
        "makespan_ratio",
        "makespan",
        "completion time over the ideal bound (worst regime)",
        "x",
        "≤ 1.15",
        lambda v: v <= 1.15,
    ),
    Figure(
        "rate_limit_utilisation",
        "rate_limit",
        "Tango calls per second over the limit, during a backlog",
        "x",
        "- (at most 0.926 by design)",
    ),
    Figure(
        "calls_over_limit",
        "rate_limit",
        "calls Tango refused for the rate limit",
        "",
        "0",
        lambda v: v == 0,
    ),
    Figure("parked_rss_mb", "parked", "worker resident memory with the requests parked", "MB"),
    Figure(
        "redis_bytes_per_request",
        "parked",
        "Redis memory per waiting request (the most of: queued, parked, waiting for its turn)",
        "B",
        "≤ 1000",
        lambda v: v <= 1000,
    ),
    Figure("redis_ops_per_resend", "redis_ops", "Redis commands per successful resend", ""),
    Figure(
        "redis_round_trips_per_resend",
        "redis_ops",
        "Redis round trips per resend on the straight path (enqueue, gate, call, outcome)",
        "",
        "≤ 4",
        lambda v: v <= 4,
    ),
    Figure(
        "idle_cpu_percent",
        "parked",
        "worker CPU while requests wait for their windows (% of one core)",
        "%",
    ),
    Figure(
        "deploy_pause_max_s",
        "deploy",
        "rolling deploy under a 1 call/s backlog: longest pause between consecutive calls",
        "s",
        "≤ 5",
        lambda v: v <= 5,
    ),
    Figure(
        "overhead_ratio_wait1",
        "durable",
        "with REDIS_WAIT_REPLICAS=1: throughput over a plain Celery task making the same call "
        "between the same two WAITs (a primary and a replica of the run's own)",
        "x",
    ),
    Figure(
        "failover_lost",
        "failover",
        "Sentinel failover under load (REDIS_WAIT_REPLICAS=1): requests given a 202 or an id "
        "that did not end sent",
        "",
        "0",
        lambda v: v == 0,
    ),
    Figure(
        "failover_duplicates",
        "failover",
        "Sentinel failover under load: resends beyond the first of a request",
        "",
        "0, with REDIS_WAIT_REPLICAS=1",
        lambda v: v == 0,
    ),
    Figure(
        "failover_resume_s",
        "failover",
        "Sentinel failover under load: from the promotion to the first call to Tango after it",
        "s",
        "≤ 10",
        lambda v: v <= 10,
    ),
    Figure(
        "kill_recovery_s",
        "kill",
        "SIGKILL: until the last request it left (not in flight) runs again, past its wait",
        "s",
        "≤ 30",
        lambda v: v <= 30,
    ),
    Figure(
        "duplicate_resends",
        "kill",
        "SIGKILL: second resends of a request (its first call was cut off mid-call; the "
        "replacement's probe decides, `probes` in the details)",
        "",
        "0 where the probe's proof is conclusive",
        lambda v: v == 0,
    ),
    Figure(
        "webhook_rps_ratio",
        "webhook",
        "webhook storm: `tango-resend web` requests/s over a minimal verify-and-publish peer's",
        "x",
        "≥ 0.7",
        lambda v: v >= 0.7,
    ),
    Figure(
        "webhook_p99_ratio",
        "webhook",
        "webhook storm: our p99 latency over the peer's, at the same load",
        "x",
        "≤ 1.5",
        lambda v: v <= 1.5,
    ),
    Figure(
        "webhook_scale_2proc",
        "webhook",
        "webhook storm: `tango-resend web --workers 2` over one process",
        "x",
        "≥ 1.6",
        lambda v: v >= 1.6,
    ),
    Figure(
        "bulk_enqueue_ratio",
        "bulk",
        "`enqueue --file` (validated, stored, queued) rows/s over a plain `send_task` loop's",
        "x",
        "≥ 0.8",
        lambda v: v >= 0.8,
    ),
    Figure("bulk_enqueue_rows_per_s", "bulk", "`enqueue --file`: rows queued per second", "/s"),
    Figure(
        "bulk_plain_send_task_per_s",
        "bulk",
        "plain loop of Celery `send_task`: messages per second",
        "/s",
    ),
    Figure("bulk_peak_rss_mb", "bulk", "`enqueue --file`: peak resident memory", "MB"),
)


def machine(redis_version: str) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": platform.platform(terse=True),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "redis": redis_version,
        "celery": version("celery"),
        "kombu": version("kombu"),
        "redis_py": version("redis"),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def describe_machine(info: dict[str, Any]) -> str:
    return (
        f"{info['cores']} cores ({info['cpu'] or 'unknown CPU'}), {info['memory_gb']} GB memory, "
        f"{info['os']}, {info['python']}, Redis {info['redis']}, Celery {info['celery']}"
    )


def _load_warning(info: dict[str, Any]) -> str:
    """Other work on the machine moves the throughput figures most: say when there was some."""
    cores = int(info.get("cores") or 1)
    loads = [*info.get("load_average_at_start", []), *info.get("load_average_at_end", [])[:1]]
    if not loads or max(loads) <= 0.5 * cores:
        return ""
    return (
        f"Note: the machine was busy with other work (load average up to {max(loads):.1f} on "
        f"{cores} cores); throughput figures vary most under load."
    )


def _format(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and unit == ""):
        return f"{int(value):,}"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "x":
        return f"{value:.3f}"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.1f}"


def verdict(figure: Figure, value: Any) -> str:
    if figure.check is None or value is None:
        return ""
    try:
        return "✅" if figure.check(float(value)) else "❌"
    except (TypeError, ValueError):
        return ""


def table(results: dict[str, Any]) -> str:
    lines = ["| figure | value | goal | | what |", "|---|---:|---|---|---|"]
    for figure in FIGURES:
        value = results.get(figure.key)
        lines.append(
            f"| `{figure.key}` | {_format(value, figure.unit)} | {figure.goal or '-'} | "
            f"{verdict(figure, value)} | {figure.label} |"
        )
    return "\n".join(lines)


def throughput_paragraph(results: dict[str, Any]) -> str:
    """What bounds throughput, with this run's figures (empty if a scenario is missing)."""
    details = results.get("details", {})
    try:
        overhead = details["overhead"]
        regimes = {regime["regime"]: regime for regime in details["makespan"]["regimes"]}
        ops = details["redis_ops"]
        values = {
            "util": float(results["rate_limit_utilisation"]),
            "over": int(results["calls_over_limit"]),
            "rate": float(results["params"]["rate_limit"]["rate_limit"]),
            "latency_ratio": float(regimes["latency-bound"]["ratio"]),
            "plain": float(overhead["plain_per_s"]),
            "plain_cpu": float(overhead["plain_worker_cpu_ms_per_resend"]),
            "ours": float(overhead["ours_per_s"]),
            "ours_cpu": float(overhead["ours_worker_cpu_ms_per_resend"]),
            "ratio": float(results["overhead_ratio"]),
            "ops": float(ops["distinct_orders"]["ops_per_resend_this_db"]),
            "plain_ops": float(ops["plain_task"]["ops_per_resend_this_db"]),
        }
    except (KeyError, TypeError, ValueError):
        return ""
    return (
        "**What bounds throughput.** Every resend is one call to Tango, so n worker processes "
        "send at most min(R, n·C/L, n/c) resends per second: Tango's rate limit R (fleet-wide; "
        "tango-resend's default is 1 call/s), then Tango's latency L with C calls in flight per "
        "process, then the CPU one task costs a process, c (a Celery worker process runs "
        "Python on one core). Against the real Tango (R = 1/s, L of a few hundred ms, C = 16) "
        "the rate limit is the bound by more than an order of magnitude, and a backlog got "
        f"{values['util']:.1%} of it here (R = {values['rate']:g}/s; "
        f"{values['over']} call(s) over it; slots are spaced 8% wider than the limit, so "
        "92.6% is the most it can get). Where latency bounds (no rate limit, L = 0.2 s, C = 16) "
        f"the work finished within {values['latency_ratio']:.2f} times M·k·L/C. With neither "
        "(0 ms, no limit) the bound is Celery's own per-task cost: a plain Celery task making "
        f"the same call managed {values['plain']:.0f} resends/s in one worker process "
        f"({values['plain_cpu']:.2f} ms of CPU each); tango-resend managed "
        f"{values['ours']:.0f}/s ({values['ours_cpu']:.2f} ms), **{values['ratio']:.2f} of that "
        "bound**. The difference is the work that makes resends exact (records, window, FIFO, "
        f"outcome, metrics): {values['ops']:.0f} Redis commands per resend against "
        f"{values['plain_ops']:.0f} for the plain task."
    )


_COST_COLUMNS = (
    ("plain", "plain Celery task"),
    ("before", "tango-resend before"),
    ("after", "tango-resend after"),
)


def cost_section(results: dict[str, Any], plot_prefix: str = "") -> str:
    """The `cost` scenario's split: a table and its plot (empty if it did not run)."""
    cost = results.get("details", {}).get("cost")
    if not cost or not cost.get("ms_per_resend"):
        return ""
    splits = cost["ms_per_resend"]
    columns = [(key, label) for key, label in _COST_COLUMNS if key in splits]
    before = cost.get("before")
    lines = [
        "**Per-resend cost.** CPU per resend by where it went, in ms: the worker process by "
        "the code its threads were running (a sampler inside it; our Python includes the "
        "standard library and packages such as pydantic that it calls), and Redis's own "
        "(`INFO cpu`, server-wide). Same workload as the overhead figure; sampled, the worker "
        "switches threads more often and uses about a fifth more CPU than there; the "
        "sampler's caveats are in [bench/README.md](bench/README.md)."
        + (
            f" Before: commit `{before['commit'][:7]}`, measured {before['generated_at']} "
            "(`bench/results/cost_before.json`; that run measured after at "
            f"{before['same_run_after_total_ms_per_resend']:.2f} ms and the plain task at "
            f"{before['same_run_plain_total_ms_per_resend']:.2f} ms; before over after, "
            "repeat by repeat in that run: "
            f"{before['before_over_after_paired']['total']:.2f} in total, "
            f"{before['before_over_after_paired']['Redis client']:.2f} for the Redis client)."
            if before
            else ""
        ),
        "",
        "| ms of CPU per resend | " + " | ".join(label for _, label in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for category in cost["categories"]:
        values = " | ".join(f"{float(splits[key][category]):.2f}" for key, _ in columns)
        lines.append(f"| {category} | {values} |")
    totals = " | ".join(f"**{sum(map(float, splits[key].values())):.2f}**" for key, _ in columns)
    lines.append(f"| **total** | {totals} |")
    lines += ["", f"![CPU per resend by category]({plot_prefix}cost_split.png)"]
    return "\n".join(lines)


PLOTS = (
    ("overhead.png", "throughput, ours vs the plain task"),
    ("lateness.png", "lateness distribution and timeline, ours vs naive"),
    ("makespan.png", "completion over time against the ideal bound"),
    ("rate_limit.png", "calls per second during a backlog"),
    ("parked.png", "worker memory and CPU with parked requests"),
    ("redis_ops.png", "Redis commands per resend"),
    ("deploy.png", "calls during a rolling deploy under the rate limit"),
    ("kill.png", "calls around a SIGKILL and the replacement"),
)


def markdown(results: dict[str, Any], plot_prefix: str = "") -> str:
    """The report: table, what bounds throughput, parameters, machine, plots."""
    info = results.get("machine", {})
    lines = [
        f"## tango-resend benchmark ({results.get('mode', '?')} run, "
        f"{results.get('generated_at', '?')})",
        "",
        table(results),
        "",
        f"Machine: {describe_machine(info)}." if info else "",
        _load_warning(info),
        f"Wall time: {results.get('wall_seconds', {}).get('total', 0):.0f} s.",
        "",
        throughput_paragraph(results),
        "",
        cost_section(results, plot_prefix),
        "",
        "Parameters:",
        "",
        *params_lines(results),
        *[f"- note: {note}" for note in results.get("params", {}).get("notes", [])],
        "",
        *[f"![{what}]({plot_prefix}{name})" for name, what in PLOTS],
        "",
    ]
    return "\n".join(lines)


def readme_block(results: dict[str, Any]) -> str:
    """The top-level README's section: the figures and one plot, and a link to
    bench/README.md, where the method, the other plots and the history are."""
    info = results.get("machine", {})
    mode = results.get("mode", "?")
    command = "make bench" if mode == "full" else "make bench-quick"
    machine = f"; {describe_machine(info)}" if info else ""
    first_plot, what = PLOTS[0]
    return "\n".join(
        [
            "## Performance",
            "",
            "`make bench` (about 11 minutes) and `make bench-quick` (about 5.5 minutes) measure "
            "every figure below, each side by side with a plain Celery task making the same "
            "call on the same machine; never in the test suite. The figures of the last run "
            f"(`{command}`, {results.get('generated_at', '?')}{machine}):",
            _load_warning(info),
            "",
            table(results),
            "",
            f"![{what}](bench/results/{first_plot})",
            "",
            "How each figure is measured and its caveats, what bounds throughput, where a "
            "resend's CPU goes, every plot, and how the figures came to be what they are: "
            "[bench/README.md](bench/README.md) (the run's parameters: "
            "[latest.json](bench/results/latest.json)).",
            "",
        ]
    )


def write(results: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "latest.json").write_text(
        json.dumps(results, indent=2, default=_json_default) + "\n"
    )
    (out_dir / "latest.md").write_text(markdown(results))
    (out_dir / "readme-section.md").write_text(readme_block(results))


def _json_default(value: Any) -> Any:
    if isinstance(value, set | tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def load(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "latest.json"
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded
