"""Per-resend cost: where a resend's CPU goes, for tango-resend and for the plain Celery task.

The overhead workload (N distinct orders queued first, 0 ms latency, no rate limit, one worker
process, threads x C) under `bench/cost_sampler.py`, which charges each worker thread's CPU to
the category of its stack: our Python, the Redis client, HTTP, Celery, other (and its own,
`profiler`, left out of the figures). Redis's own CPU (`INFO cpu`, server-wide) is a fifth
category; the sandbox's (Tango's stand-in) is measured apart, not in the split.

The figures are the CPU between the answers at `from_fraction` and `to_fraction` of the run (the
steady drain), divided by the answers in between. tango-resend before this round is read from
`bench/results/cost_before.json` (`python -m bench.cost_before`, which measures an earlier
checkout the same way, beside this one and the plain task).
"""

from __future__ import annotations

import bisect
import json
import math
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import analysis
from bench.config import CostParams
from bench.cost_sampler import (
    CELERY,
    HTTP,
    OTHER,
    OURS,
    PROFILER,
    REDIS_CLIENT,
    REDIS_SERVER,
    WORKER_CATEGORIES,
)
from bench.harness import (
    REPO_ROOT,
    RedisProbe,
    Sandbox,
    Stack,
    WorkerProcess,
    child_env,
    new_tag,
    start_our_worker,
    start_peer_worker,
)
from bench.naive_app import PLAIN_TASK
from bench.scenarios.common import (
    Context,
    Item,
    ScenarioResult,
    distinct_fields,
    enqueue_peer,
    order_ids,
    wait_calls,
    wait_ours_finished,
)

SAMPLER = Path(__file__).resolve().parents[1] / "cost_sampler.py"
BEFORE_FILE = "cost_before.json"
# The split's categories in the plot's and the table's order.
CATEGORIES = (OURS, REDIS_CLIENT, REDIS_SERVER, HTTP, CELERY, OTHER)
assert set(CATEGORIES) == {*WORKER_CATEGORIES, REDIS_SERVER}

# Submits the items (a JSON file of [order, fields]) with the checkout's own producer, which
# may be an earlier version's: each version stores requests in its own layout.
_ENQUEUE = """
import json, sys, time
from worker.resend.producer import submit_resend
items = json.load(open(sys.argv[1]))
started = time.perf_counter()
for order, fields in items:
    submit_resend({"referenceOrderID": order, **fields})
print(time.perf_counter() - started)
"""


@dataclass(frozen=True)
class Tree:
    """A checkout whose worker is measured: its interpreter (its own virtualenv) and root."""

    python: str = sys.executable
    root: Path = REPO_ROOT


@dataclass
class ServerSampler:
    """Redis's CPU (INFO cpu: user + sys, the whole server) and the sandbox's, over time."""

    probe: RedisProbe
    sandbox: Sandbox
    interval: float = 0.05
    # (time.time(), Redis CPU seconds, sandbox CPU seconds)
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        info = self.probe.client.info("cpu")
        redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        self.samples.append((time.time(), redis_cpu, self.sandbox.cpu_seconds()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
        self._sample()

    def start(self) -> ServerSampler:
        self._thread = threading.Thread(target=self._run, name="server-cpu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def interpolate(times: list[float], values: list[float], at: float) -> float:
    """A cumulative figure at `at`, linear between the samples either side."""
    index = bisect.bisect_left(times, at)
    if index <= 0:
        return values[0]
    if index >= len(times):
        return values[-1]
    t0, t1 = times[index - 1], times[index]
    share = (at - t0) / (t1 - t0) if t1 > t0 else 1.0
    return values[index - 1] + share * (values[index] - values[index - 1])


def _enqueue_ours(ctx: Context, tree: Tree, settings: dict[str, str], items: list[Item]) -> float:
    items_file = ctx.log_dir / f"cost-items-{new_tag()}.json"
    items_file.write_text(json.dumps(items))
    output = subprocess.run(
        [tree.python, "-c", _ENQUEUE, str(items_file)],
        env=child_env(settings, tree.root),
        cwd=ctx.log_dir,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    items_file.unlink()
    return float(output.strip().splitlines()[-1])


def _start_worker(
    ctx: Context, p: CostParams, kind: str, tree: Tree, settings: dict[str, str], out: Path
) -> WorkerProcess:
    wrapper = [
        str(SAMPLER),
        f"--root={tree.root}",
        f"--out={out}",
        f"--interval={p.interval_seconds:g}",
        f"--switch-interval={p.switch_interval_seconds:g}",
        f"--module={'celery' if kind == 'plain' else 'worker'}",
        "--",
    ]
    if kind == "plain":
        return start_peer_worker(
            settings, ctx.log_dir, ctx.probe, concurrency=p.concurrency, wrapper=wrapper
        )
    return start_our_worker(
        settings,
        ctx.log_dir,
        ctx.probe,
        concurrency=p.concurrency,
        wrapper=wrapper,
        python=tree.python,
        root=tree.root,
    )


def measure(ctx: Context, p: CostParams, kind: str, tree: Tree | None = None) -> dict[str, Any]:
    """One sampled drain of `p.orders` distinct orders: `kind` "ours" (of `tree`) or "plain"."""
    tree = tree or Tree()
    orders = order_ids(p.orders)
    items = [(order, distinct_fields(order, 0)) for order in orders]
    out = ctx.log_dir / f"cost-{kind}-{new_tag()}.json"
    with Stack() as stack:
        sandbox = ctx.sandbox(
            stack, orders, cooldown_seconds=p.window_seconds, expected_calls=p.orders
        )
        settings = ctx.use_run_settings(
            f"cost-{kind}",
            base_url=sandbox.base_url,
            window_seconds=p.window_seconds,
            WORKER_CONCURRENCY=str(p.concurrency),
        )
        if kind == "plain":
            enqueue_peer(PLAIN_TASK, settings["RESEND_QUEUE"], items)
        else:
            _enqueue_ours(ctx, tree, settings, items)
        server = ServerSampler(ctx.probe, sandbox).start()
        stack.push(server, server.stop)
        worker = _start_worker(ctx, p, kind, tree, settings, out)
        stack.push(worker, worker.stop)
        wait_calls(sandbox, p.orders, timeout=300)
        if kind != "plain":
            wait_ours_finished(ctx.probe, settings["REDIS_KEY_PREFIX"], timeout=60)
        time.sleep(0.2)
        server.stop()
        worker.stop()  # the sampler writes its JSON as the worker exits
        calls = analysis.resend_calls(sandbox.calls())
    return _figures(p, kind, tree, calls, json.loads(out.read_text()), server.samples)


def _figures(
    p: CostParams,
    kind: str,
    tree: Tree,
    calls: list[dict[str, Any]],
    sampled: dict[str, Any],
    server: list[tuple[float, float, float]],
) -> dict[str, Any]:
    answers = sorted(float(call["answered_at"]) for call in calls)
    first = math.floor(p.from_fraction * (len(answers) - 1))
    last = math.ceil(p.to_fraction * (len(answers) - 1))
    start, end, resends = answers[first], answers[last], last - first

    def per_resend(times: list[float], values: list[float]) -> float:
        return (
            1000 * (interpolate(times, values, end) - interpolate(times, values, start)) / resends
        )

    snapshots = sampled["snapshots"]
    times = [float(row[0]) for row in snapshots]
    names = list(sampled["categories"])
    worker = {
        name: per_resend(times, [float(row[2][index]) for row in snapshots])
        for index, name in enumerate(names)
    }
    server_times = [at for at, _, _ in server]
    split = {name: worker[name] for name in WORKER_CATEGORIES}
    split[REDIS_SERVER] = per_resend(server_times, [cpu for _, cpu, _ in server])
    process = per_resend(times, [float(row[1]) for row in snapshots])
    return {
        "kind": kind,
        "root": str(tree.root),
        "calls": len(calls),
        "statuses": sorted({int(call["status"] or 0) for call in calls}),
        "resends_measured": resends,
        "measured_seconds": end - start,
        "resends_per_s_sampled": resends / (end - start),
        "ms_per_resend": {name: split[name] for name in CATEGORIES},
        "total_ms_per_resend": sum(split.values()),
        "worker_ms_per_resend": sum(worker[name] for name in WORKER_CATEGORIES),
        "profiler_ms_per_resend": worker[PROFILER],
        # The process's own CPU over the same time: the categories and the profiler should
        # add up to it (threads the sampler missed, e.g. ones that exited, would not).
        "process_ms_per_resend": process,
        "sandbox_ms_per_call": per_resend(server_times, [cpu for _, _, cpu in server]),
        "samples": int(sampled["samples"]),
        "mean_sample_interval_ms": 1000 * float(sampled["mean_sample_interval_seconds"]),
        "hiredis_loaded": bool(sampled["hiredis_loaded"]),
        "switch_interval_seconds": float(sampled["switch_interval_seconds"]),
        # Where each category's CPU was seen most, over the worker's whole life (start-up
        # included): [deciding frame, innermost frame, CPU seconds].
        "top_sites": {name: rows[:5] for name, rows in sampled["top_sites"].items()},
    }


def median_split(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each category's median over the runs (the total: the sum of the medians)."""
    return {
        name: statistics.median(float(run["ms_per_resend"][name]) for run in runs)
        for name in CATEGORIES
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A kind's runs in short: the median split and the figures beside it."""

    def median(key: str) -> float:
        return statistics.median(float(run[key]) for run in runs)

    split = median_split(runs)
    return {
        "ms_per_resend": split,
        "total_ms_per_resend": sum(split.values()),
        "worker_ms_per_resend_range": [
            min(run["worker_ms_per_resend"] for run in runs),
            max(run["worker_ms_per_resend"] for run in runs),
        ],
        "profiler_ms_per_resend": median("profiler_ms_per_resend"),
        "process_ms_per_resend": median("process_ms_per_resend"),
        "sandbox_ms_per_call": median("sandbox_ms_per_call"),
        "resends_per_s_sampled": median("resends_per_s_sampled"),
        "hiredis_loaded": any(run["hiredis_loaded"] for run in runs),
        "repeats": len(runs),
    }


def paired_ratios(runs: list[dict[str, Any]], others: list[dict[str, Any]]) -> dict[str, float]:
    """Median over the repeats of one kind's figure over another's in the same repeat (the
    runs next to each other): less moved by the machine's load, which changes from one
    repeat to the next, than a ratio of medians."""

    def ratio(key: str | None) -> float:
        def figure(run: dict[str, Any]) -> float:
            return float(run["total_ms_per_resend"] if key is None else run["ms_per_resend"][key])

        pairs = zip(runs, others, strict=False)
        return statistics.median(figure(one) / figure(other) for one, other in pairs)

    return {"total": ratio(None), **{name: ratio(name) for name in CATEGORIES if name != OURS}}


def measure_in_turns(
    ctx: Context, p: CostParams, kinds: dict[str, Tree]
) -> dict[str, list[dict[str, Any]]]:
    """`p.repeats` runs of each kind, the order turned round every repeat."""
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    names = list(kinds)
    for repeat in range(p.repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            result = measure(ctx, p, "plain" if name == "plain" else "ours", kinds[name])
            result["kind"] = name
            runs[name].append(result)
            ctx.say(f"{name}: {describe(result)}")
    return runs


def describe(run: dict[str, Any]) -> str:
    split = run["ms_per_resend"]
    parts = ", ".join(f"{name} {split[name]:.3f}" for name in CATEGORIES)
    return (
        f"{run['total_ms_per_resend']:.3f} ms CPU per resend ({parts}); profiler "
        f"{run['profiler_ms_per_resend']:.3f}, sandbox {run['sandbox_ms_per_call']:.3f}"
    )


def load_before(out_dir: Path) -> dict[str, Any] | None:
    """cost_before.json from the run's output directory, else the committed one."""
    for path in (out_dir / BEFORE_FILE, REPO_ROOT / "bench" / "results" / BEFORE_FILE):
        if path.exists():
            loaded: dict[str, Any] = json.loads(path.read_text())
            return loaded
    return None


def run(ctx: Context, p: CostParams) -> ScenarioResult:
    runs = measure_in_turns(ctx, p, {"after": Tree(), "plain": Tree()})
    after, plain = summary(runs["after"]), summary(runs["plain"])
    before_file = load_before(ctx.out_dir)
    splits = {"plain": plain["ms_per_resend"], "after": after["ms_per_resend"]}
    details: dict[str, Any] = {"categories": list(CATEGORIES), "plain": plain, "after": after}
    if before_file is not None:
        if before_file["params"]["switch_interval_seconds"] != p.switch_interval_seconds:
            ctx.say(f"{BEFORE_FILE} was sampled with another switch interval: regenerate it")
        splits["before"] = before_file["before"]["ms_per_resend"]
        details["before"] = {
            **before_file["before"],
            "source": BEFORE_FILE,
            "commit": before_file["commit"],
            "generated_at": before_file["generated_at"],
            # The same run's figures for this checkout, for comparing runs of different days.
            "same_run_after_total_ms_per_resend": before_file["after"]["total_ms_per_resend"],
            "same_run_plain_total_ms_per_resend": before_file["plain"]["total_ms_per_resend"],
            "before_over_after_paired": before_file["before_over_after_paired"],
        }
    else:
        ctx.say(f"no {BEFORE_FILE}: the plot has no 'before' bar (python -m bench.cost_before)")
    details["ms_per_resend"] = splits
    details["runs"] = [one for kind in runs for one in runs[kind]]
    return ScenarioResult(
        details=details,
        series={
            "categories": list(CATEGORIES),
            "splits": splits,
            "switch_interval_seconds": p.switch_interval_seconds,
            "before_label": (
                f"{before_file['commit'][:7]}, from another run: {before_file['generated_at']},\n"
                f"where after was {before_file['after']['total_ms_per_resend']:.2f} ms"
                if before_file
                else ""
            ),
        },
    )
