"""PNG plots of the timelines and distributions (matplotlib, no display needed)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

OURS = "#1f77b4"
PEER = "#d62728"
GREY = "#7f7f7f"


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def overhead(series: dict[str, Any], path: Path) -> None:
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4))
    for axes, key, title, unit in (
        (left, "", "throughput (resends/s)", "per s"),
        (middle, "_cpu", "worker CPU per resend (ms)", "ms"),
    ):
        ours, plain = series["ours" + key], series["plain" + key]
        labels = ["tango-resend", "plain Celery task"]
        values = [sum(ours) / len(ours), sum(plain) / len(plain)]
        axes.bar(labels, values, color=[OURS, PEER], alpha=0.8)
        for index, points in enumerate((ours, plain)):
            axes.scatter([index] * len(points), points, color="black", s=12, zorder=3)
        for index, value in enumerate(values):
            axes.annotate(
                f"{value:.1f}", (index, value / 2), ha="center", color="white", weight="bold"
            )
        axes.set_title(title)
        axes.set_ylabel(unit)
    capacity = series.get("capacity")
    if capacity:
        left.axhline(capacity, color=GREY, linestyle="--")
        left.annotate(
            f"sandbox capacity probe: {capacity:.0f}/s",
            (0.5, capacity),
            ha="center",
            va="bottom",
            fontsize=8,
            color=GREY,
        )
        left.set_ylim(top=capacity * 1.12)
    for timeline, color, label in (
        (series["ours_timeline"], OURS, "tango-resend"),
        (series["plain_timeline"], PEER, "plain Celery task"),
    ):
        right.plot([t for t, _ in timeline], [n for _, n in timeline], color=color, label=label)
    right.set_title("resends answered over time (first run)")
    right.set_xlabel("seconds since the first call")
    right.set_ylabel("resends")
    right.legend()
    _save(figure, path)


def _timeline(axes: Axes, points: list[Any], orders: dict[str, int], title: str) -> None:
    shown = min(len(orders), 40)
    ok = [(t, orders[o]) for o, t, status in points if status == 201 and orders[o] < shown]
    refused = [(t, orders[o]) for o, t, status in points if status != 201 and orders[o] < shown]
    axes.scatter(
        [t for t, _ in refused],
        [y for _, y in refused],
        s=9,
        color=PEER,
        marker="x",
        label="403.005 cooldown error",
        zorder=2,
    )
    axes.scatter(
        [t for t, _ in ok], [y for _, y in ok], s=12, color="#2ca02c", label="201 sent", zorder=3
    )
    axes.set_title(title)
    axes.set_xlabel("seconds since the first call")
    axes.set_ylabel(f"order (first {shown})")
    axes.legend(loc="lower right", fontsize=8, framealpha=0.95)


def lateness(series: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    cdf = axes[0]
    for values, color, label in (
        (series["ours"], OURS, "tango-resend"),
        (series["naive"], PEER, "naive autoretry"),
    ):
        if not values:
            continue
        ordered = sorted(max(value, 1e-4) for value in values)
        fractions = [(index + 1) / len(ordered) for index in range(len(ordered))]
        cdf.step(ordered, fractions, where="post", color=color, label=f"{label} (n={len(values)})")
    cdf.axvline(0.25, color=GREY, linestyle="--", label="goal: p99 ≤ 0.25 s")
    cdf.set_xscale("log")
    cdf.set_xlabel("lateness: arrival - (previous answer + W), s (log)")
    cdf.set_ylabel("fraction of deferred resends")
    cdf.set_title(f"lateness CDF (W = {series['window_seconds']:g} s)")
    cdf.legend(fontsize=8)
    for ax, kind, name in (
        (axes[1], "ours", "tango-resend"),
        (axes[2], "naive", "naive autoretry"),
    ):
        summary = series[f"{kind}_summary"]
        _timeline(
            ax,
            series[f"{kind}_timeline"],
            series[f"{kind}_orders"],
            f"{name}: {summary['sent']} sent, {summary['lost']} lost, "
            f"{summary['cooldown_errors']} cooldown errors",
        )
    _save(figure, path)


def makespan(series: dict[str, Any], path: Path) -> None:
    regimes = series["regimes"]
    figure, axes = plt.subplots(1, len(regimes), figsize=(5 * len(regimes), 4))
    for ax, result in zip(axes if len(regimes) > 1 else [axes], regimes, strict=True):
        timeline = result["timeline"]
        ax.plot([t for t, _ in timeline], [n for _, n in timeline], color=OURS, label="measured")
        ax.axvline(
            result["ideal_seconds"],
            color=GREY,
            linestyle="--",
            label=f"ideal {result['ideal_seconds']:.2f} s",
        )
        ax.axvline(
            result["measured_seconds"],
            color=OURS,
            linestyle=":",
            label=f"done {result['measured_seconds']:.2f} s",
        )
        ax.set_title(f"{result['regime']}: ratio {result['ratio']:.3f}")
        ax.set_xlabel("seconds since the first call")
        ax.set_ylabel("resends sent")
        ax.legend(fontsize=8, loc="lower right")
    _save(figure, path)


def rate_limit(series: dict[str, Any], path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4))
    bins = series["per_second"]
    left.bar([t for t, _ in bins], [n for _, n in bins], width=0.9, align="edge", color=OURS)
    left.axhline(series["rate_limit"], color=PEER, linestyle="--", label="limit")
    left.set_xlabel("second since the first call")
    left.set_ylabel("calls arriving at Tango")
    left.set_title("calls per second during the backlog")
    left.legend()
    arrivals = series["arrivals"]
    right.plot(arrivals, range(1, len(arrivals) + 1), color=OURS, label="calls")
    refused = series.get("refused", [])
    if refused:
        right.scatter(
            refused,
            [arrivals.index(t) + 1 for t in refused],
            color=PEER,
            marker="x",
            zorder=3,
            label=f"refused by Tango (429): {len(refused)}",
        )
    if arrivals:
        end = arrivals[-1]
        right.plot(
            [0, end],
            [1, 1 + series["rate_limit"] * end],
            color=PEER,
            linestyle="--",
            label="at exactly the limit",
        )
    right.set_xlabel("seconds since the first call")
    right.set_ylabel("calls so far")
    right.set_title("cumulative calls")
    right.legend()
    _save(figure, path)


def parked(series: dict[str, Any], path: Path) -> None:
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    start = series["rss"][0][0] if series["rss"] else 0.0
    top.plot([t - start for t, _ in series["rss"]], [v for _, v in series["rss"]], color=OURS)
    top.set_ylabel("worker RSS (MB)")
    top.set_ylim(bottom=0)
    if series.get("parked"):
        count = top.twinx()
        count.plot(
            [t - start for t, _ in series["parked"]],
            [v for _, v in series["parked"]],
            color=PEER,
            linestyle="--",
        )
        count.set_ylabel("requests parked", color=PEER)
        count.set_ylim(bottom=0)
    top.set_title("one worker while requests are queued and parked")
    bottom.plot([t - start for t, _ in series["cpu"]], [v for _, v in series["cpu"]], color=OURS)
    bottom.set_ylabel("worker CPU (% of one core)")
    bottom.set_xlabel("seconds")
    for moment, label in series["marks"]:
        for ax in (top, bottom):
            ax.axvline(moment - start, color=GREY, linestyle=":")
        top.annotate(label, (moment - start, 0), rotation=90, fontsize=7, va="bottom", ha="right")
    _save(figure, path)


def redis_ops(series: dict[str, Any], path: Path) -> None:
    figure, ax = plt.subplots(figsize=(11, 4.5))
    runs = [
        ("tango-resend", series["ours"]),
        ("tango-resend, queued", series["queued"]),
        ("plain task", series["plain"]),
    ]
    commands = sorted(
        {name for _, run in runs for name in run["by_command"]},
        key=lambda name: -max(run["by_command"].get(name, 0.0) for _, run in runs),
    )
    shown, others = commands[:11], commands[11:]
    bottoms = [0.0] * len(runs)
    colours = [plt.get_cmap("tab20")(index / 20) for index in range(20)]
    for index, name in enumerate([*shown, "other"]):
        values = [
            sum(run["by_command"].get(n, 0.0) for n in others)
            if name == "other"
            else run["by_command"].get(name, 0.0)
            for _, run in runs
        ]
        ax.bar(
            [label for label, _ in runs],
            values,
            bottom=bottoms,
            label=name,
            color=colours[index % len(colours)],
        )
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    for index, total in enumerate(bottoms):
        ax.annotate(f"{total:.1f}", (index, total), ha="center", va="bottom")
    ax.set_ylabel("commands per resend (INFO commandstats)")
    ax.set_title("Redis commands per successful resend, by command")
    ax.legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


# The cost split's categories (bench/cost_sampler.py), always in these colours.
COST_COLOURS = {
    "tango-resend (our Python)": OURS,
    "Redis client": PEER,
    "Redis server": "#ff9896",
    "HTTP": "#2ca02c",
    "Celery": "#ff7f0e",
    "other": GREY,
}
_LIGHT = {"Redis server"}
_COST_ROWS = (
    ("plain", "plain Celery task"),
    ("before", "tango-resend before"),
    ("after", "tango-resend after"),
)


def cost(series: dict[str, Any], path: Path) -> None:
    """Stacked bars: CPU per resend by category, one bar per kind (plain, before, after)."""
    rows = [(key, label) for key, label in _COST_ROWS if key in series["splits"]]
    labels = [
        f"{label}\n({series['before_label']})" if key == "before" else label for key, label in rows
    ]
    figure, ax = plt.subplots(figsize=(12, 1.9 + 0.75 * len(rows)))
    lefts = [0.0] * len(rows)
    for category in series["categories"]:
        values = [float(series["splits"][key][category]) for key, _ in rows]
        ax.barh(labels, values, left=lefts, color=COST_COLOURS[category], label=category)
        for index, value in enumerate(values):
            if value >= 0.25:
                ax.annotate(
                    f"{value:.2f}",
                    (lefts[index] + value / 2, index),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if category in _LIGHT else "white",
                    weight="bold",
                )
        lefts = [left + value for left, value in zip(lefts, values, strict=True)]
    for index, total in enumerate(lefts):
        ax.annotate(f" {total:.2f} ms", (total, index), va="center", fontsize=9)
    ax.invert_yaxis()  # plain on top, after at the bottom
    ax.set_xlim(right=max(lefts) * 1.12)
    ax.set_xlabel("CPU per resend (ms): the worker process by code, and Redis's own (INFO cpu)")
    ax.set_title(
        "Where a resend's CPU goes: one worker, threads x 16, 0 ms latency, no rate limit\n"
        "(sampled inside the worker at a GIL switch interval of "
        f"{1000 * series['switch_interval_seconds']:g} ms; bench/README.md)",
        fontsize=10,
    )
    ax.legend(
        fontsize=8,
        ncol=len(series["categories"]),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22 - 0.15 / len(rows)),
        frameon=False,
    )
    _save(figure, path)


_MOMENTS = {
    "new_worker_starting": ("new worker starting", "#9467bd"),
    "sigterm": ("SIGTERM to the old worker", PEER),
    "old_worker_exited": ("old worker exited", GREY),
}


def deploy(series: dict[str, Any], path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5))
    arrivals, statuses = series["arrivals"], series["statuses"]
    interval = series["interval"]
    for status, color, label in (
        (201, "#2ca02c", "201 sent"),
        (403, "#ff7f0e", "403.005 (window opened in the portal)"),
        (429, PEER, "429 over Tango's limit"),
    ):
        points = [
            (t, k) for k, (t, s) in enumerate(zip(arrivals, statuses, strict=True)) if s == status
        ]
        if points:
            left.scatter(
                [t for t, _ in points],
                [k for _, k in points],
                s=14,
                color=color,
                label=label,
                zorder=3,
            )
    if arrivals:
        left.plot(
            [0, interval * (len(arrivals) - 1)],
            [0, len(arrivals) - 1],
            color=GREY,
            linestyle="--",
            label=f"one slot per {interval:.2f} s",
        )
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    right.step(arrivals[1:], gaps, where="pre", color=OURS, label="pause before each call")
    right.axhline(5.0, color=PEER, linestyle="--", label="goal: ≤ 5 s")
    right.axhline(interval, color=GREY, linestyle=":", label="slot interval")
    for ax in (left, right):
        for name, (label, color) in _MOMENTS.items():
            moment = series["moments"].get(name)
            if moment is not None:
                ax.axvline(moment, color=color, linestyle=":", label=label if ax is left else None)
        ax.set_xlabel("seconds since the first call")
    left.set_ylabel("call (arrival order)")
    left.set_title("calls reaching Tango during a rolling deploy")
    left.legend(fontsize=8, loc="upper left")
    right.set_ylabel("seconds since the previous call")
    right.set_ylim(0, max([5.5, *gaps]) * 1.1)
    right.set_title(f"pauses (longest {max(gaps, default=0):.2f} s)")
    right.legend(fontsize=8, loc="upper right")
    _save(figure, path)


def kill(series: dict[str, Any], path: Path) -> None:
    figure, ax = plt.subplots(figsize=(11, 4.5))
    slow = set(series["slow"])
    for status, color, label in ((201, "#2ca02c", "201 sent"), (403, "#ff7f0e", "403.005")):
        points = [(t, order) for t, order, s in series["calls"] if s == status]
        if points:
            ax.scatter(
                [t for t, _ in points],
                [o for _, o in points],
                s=16,
                color=color,
                label=label,
                zorder=3,
            )
    for order in slow:
        ax.axhline(order, color=PEER, alpha=0.15, linewidth=6)
    ax.axvline(0, color=PEER, label="SIGKILL")
    ax.axvline(series["rescuer_ready"], color="#9467bd", linestyle=":", label="replacement ready")
    recovery = series.get("recovery")
    if recovery is not None:
        ax.axvline(
            recovery,
            color=OURS,
            linestyle="--",
            label=f"last left-behind request runs ({recovery:.1f} s)",
        )
    ax.set_xlabel("seconds since the SIGKILL")
    ax.set_ylabel("order (shaded: first call in flight at the kill)")
    ax.set_title(f"calls per order around a SIGKILL (W = {series['window_seconds']:g} s)")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.95)
    _save(figure, path)


PLOTTERS = {
    "overhead": ("overhead.png", overhead),
    "lateness": ("lateness.png", lateness),
    "makespan": ("makespan.png", makespan),
    "rate_limit": ("rate_limit.png", rate_limit),
    "parked": ("parked.png", parked),
    "redis_ops": ("redis_ops.png", redis_ops),
    "deploy": ("deploy.png", deploy),
    "kill": ("kill.png", kill),
    "cost": ("cost_split.png", cost),
}


def draw(scenario: str, series: dict[str, Any], out_dir: Path) -> Path | None:
    if scenario not in PLOTTERS or not series:
        return None
    name, plotter = PLOTTERS[scenario]
    path = out_dir / name
    plotter(series, path)
    return path
