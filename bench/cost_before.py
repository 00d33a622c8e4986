"""`python -m bench.cost_before --tree DIR`: the `cost` scenario's "before" bar.

Measures tango-resend as it was at an earlier commit (a worktree of it, `DIR`, with its own
virtualenv in `DIR/.venv`, without hiredis) the way the `cost` scenario measures this checkout:
the same workload, the same sampler (`bench/cost_sampler.py`, run by the old tree's Python
against the old tree's code), the requests enqueued by the old tree's own producer. This
checkout and the plain task are measured in the same run, in turns, so the file also says how
before and after compare on one day. Writes `bench/results/cost_before.json`; regenerate it
as bench/README.md says.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import report
from bench.config import CostParams, full
from bench.harness import REPO_ROOT, RedisProbe
from bench.scenarios import cost
from bench.scenarios.common import Context

METHOD = (
    "The overhead workload (N distinct orders queued first by the tree's own producer, 0 ms "
    "latency, no rate limit, one worker process, threads x C) under bench/cost_sampler.py: "
    "every ~1 ms each worker thread's CPU since the last sample (its CPU clock) is charged to "
    "the innermost frame of its stack that belongs to a category, the worker's GIL switch "
    "interval set short so samples land inside running code; Redis server CPU from INFO cpu "
    "(server-wide). Figures are the CPU between the answers at from_fraction and to_fraction "
    "of the run over the answers in between; medians over the repeats. 'before' is the tree "
    "at `commit` with its own virtualenv (same package versions, no hiredis); 'after' and "
    "'plain' are this checkout and bench.naive_app.plain_resend, measured in the same run."
)


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _has_hiredis(python: str) -> bool:
    found = subprocess.run([python, "-c", "import hiredis"], capture_output=True, check=False)
    return found.returncode == 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cost_before", description=__doc__)
    parser.add_argument("--tree", type=Path, required=True, help="the earlier commit's worktree")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="a Redis database of the benchmark's own: it is FLUSHED",
    )
    parser.add_argument("--orders", type=int, default=full().cost.orders)
    parser.add_argument("--repeats", type=int, default=full().cost.repeats)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "bench" / "results" / cost.BEFORE_FILE
    )
    return parser.parse_args(argv)


def _document(
    args: argparse.Namespace,
    params: CostParams,
    runs: dict[str, list[dict[str, Any]]],
    info: dict[str, Any],
) -> dict[str, Any]:
    tree = args.tree.resolve()
    info["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    return {
        "what": "tango-resend's CPU per resend by category before this round's changes",
        "commit": _git(tree, "rev-parse", "HEAD"),
        "commit_subject": _git(tree, "log", "-1", "--format=%s"),
        "after_commit": _git(REPO_ROOT, "rev-parse", "HEAD"),
        "after_worktree_dirty": bool(
            _git(REPO_ROOT, "status", "--porcelain", "--", "worker", "tasks")
        ),
        "generated_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"python -m bench.cost_before --tree <a worktree of that commit> "
        f"--orders {params.orders} --repeats {params.repeats}",
        "machine": info,
        "method": METHOD,
        "params": asdict(params),
        "categories": list(cost.CATEGORIES),
        **{kind: cost.summary(kind_runs) for kind, kind_runs in runs.items()},
        # before / after, repeat by repeat (medians): the comparison least moved by the load.
        "before_over_after_paired": cost.paired_ratios(runs["before"], runs["after"]),
        "runs": [run for kind_runs in runs.values() for run in kind_runs],
    }


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    python = args.tree.resolve() / ".venv" / "bin" / "python"
    if not python.exists():
        print(f"bench.cost_before: no {python}: give the tree its own venv", file=sys.stderr)
        return 2
    if _has_hiredis(str(python)):
        print(f"bench.cost_before: {python} has hiredis; 'before' had none", file=sys.stderr)
        return 2
    probe = RedisProbe(args.redis_url)
    if int(probe.client.connection_pool.connection_kwargs.get("db", 0)) == 0:
        print("bench.cost_before: refusing to flush Redis database 0", file=sys.stderr)
        return 2
    params = CostParams(orders=args.orders, repeats=args.repeats)
    log_dir = Path(tempfile.mkdtemp(prefix="tango-resend-cost-before-"))
    os.chdir(log_dir)  # no developer's .env is read
    ctx = Context(probe=probe, log_dir=log_dir, out_dir=args.out.parent)
    probe.flush()
    kinds = {
        "before": cost.Tree(str(python), args.tree.resolve()),
        "after": cost.Tree(),
        "plain": cost.Tree(),
    }
    info = report.machine(probe.version())
    runs = cost.measure_in_turns(ctx, params, kinds)
    probe.flush()
    document = _document(args, params, runs, info)
    args.out.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
