"""`python -m bench [--quick] [--only a,b] [--redis-url URL] [--out DIR] [--keep-logs]`."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import plots, report
from bench.config import BenchParams, full, quick
from bench.harness import RedisProbe
from bench.scenarios import (
    bulk,
    cost,
    deploy,
    durable,
    failover,
    kill,
    lateness,
    makespan,
    overhead,
    parked,
    profile,
    ratelimit,
    redis_ops,
    webhook,
)
from bench.scenarios.common import Context, ScenarioResult
from tests.support.processes import REPO_ROOT

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"

Runner = Callable[[Context, BenchParams], ScenarioResult]
SCENARIOS: dict[str, Runner] = {
    "overhead": lambda ctx, p: overhead.run(ctx, p.overhead),
    "lateness": lambda ctx, p: lateness.run(ctx, p.lateness),
    "makespan": lambda ctx, p: makespan.run(ctx, p.makespan),
    "rate_limit": lambda ctx, p: ratelimit.run(ctx, p.rate_limit),
    "parked": lambda ctx, p: parked.run(ctx, p.parked),
    "redis_ops": lambda ctx, p: redis_ops.run(ctx, p.redis_ops),
    "profile": lambda ctx, p: profile.run(ctx, p.profile),
    "cost": lambda ctx, p: cost.run(ctx, p.cost),
    "deploy": lambda ctx, p: deploy.run(ctx, p.deploy),
    "kill": lambda ctx, p: kill.run(ctx, p.kill),
    "webhook": lambda ctx, p: webhook.run(ctx, p.webhook),
    "bulk": lambda ctx, p: bulk.run(ctx, p.bulk),
    "durable": lambda ctx, p: durable.run(ctx, p.durable),
    "failover": lambda ctx, p: failover.run(ctx, p.failover),
}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 8 minutes)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios (default: all): {', '.join(SCENARIOS)}; "
        "results are merged into an existing latest.json of the same mode",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="a Redis database of the benchmark's own: it is FLUSHED (default: %(default)s, "
        "or $BENCH_REDIS_URL)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--keep-logs", action="store_true", help="keep worker/sandbox logs")
    return parser.parse_args(argv)


def _clean(value: Any) -> Any:
    """NaN and infinity are not JSON: null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    params = quick() if args.quick else full()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        print(f"bench: unknown scenario(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    probe = RedisProbe(args.redis_url)
    database = int(probe.client.connection_pool.connection_kwargs.get("db", 0))
    if database == 0:
        print("bench: refusing to flush Redis database 0; give --redis-url .../N", file=sys.stderr)
        return 2
    out_dir: Path = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="tango-resend-bench-"))
    # No developer's .env is read by this process's settings: they are all given explicitly.
    os.chdir(log_dir)

    previous = report.load(out_dir) if args.only else None
    results: dict[str, Any] = (
        previous if previous is not None and previous.get("mode") == params.mode else {}
    )
    all_params = params.as_dict()
    results.setdefault("params", {})
    results["params"].update(
        {"mode": params.mode, "notes": params.notes, "redis_url": args.redis_url}
    )
    results.setdefault("details", {})
    results.setdefault("wall_seconds", {})
    results["mode"] = params.mode
    results["generated_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["machine"] = report.machine(probe.version())

    ctx = Context(probe=probe, log_dir=log_dir, out_dir=out_dir)
    started = time.monotonic()
    failed: list[str] = []
    print(f"tango-resend bench ({params.mode}), Redis {args.redis_url}, logs in {log_dir}")
    for name in chosen:
        print(f"[{name}]", flush=True)
        probe.flush()  # each scenario starts from an empty database
        scenario_started = time.monotonic()
        try:
            result = SCENARIOS[name](ctx, params)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        finally:
            results["wall_seconds"][name] = round(time.monotonic() - scenario_started, 1)
        results.update(_clean(result.metrics))
        results["details"][name] = _clean(result.details)
        if name in all_params:
            results["params"][name] = all_params[name]
        path = plots.draw(name, result.series, out_dir)
        if path is not None:
            print(
                f"  plot: {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
            )
    probe.flush()
    results["wall_seconds"]["total"] = round(
        sum(
            value
            for key, value in results["wall_seconds"].items()
            if key not in ("total", "this_run")
        ),
        1,
    )
    results["wall_seconds"]["this_run"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    ordered = {figure.key: results.get(figure.key) for figure in report.FIGURES}
    ordered.update({key: value for key, value in results.items() if key not in ordered})
    report.write(ordered, out_dir)
    print()
    print(report.table(ordered))
    print(f"\nwrote {out_dir / 'latest.json'} and latest.md in {time.monotonic() - started:.0f} s")
    if failed:
        print(f"bench: failed scenario(s): {', '.join(failed)}; logs kept in {log_dir}")
        return 1
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
