"""Scenario 11: queueing a CSV file (`tango-resend enqueue --file`) against a plain loop of
Celery `send_task` calls for the same rows.

A file of `rows` resends of distinct orders (each row an order and a new email address) is
written once. Then, in turns (`repeats` times, the order swapped each time), with no worker
running and the database flushed before each:

- ours: `python -m worker enqueue --file FILE` (every row validated, then stored with its
  idempotency key and its task message queued, as in production; the text summary, so the
  rows' request ids are not kept);
- plain: `python -m bench.bulk_plain FILE` (read the same file, one `send_task` of the
  peer's plain task per row; nothing else).

Each is a subprocess, timed from its start to its exit (interpreter start and imports
included on both sides), its peak RSS and CPU time read from `wait4` by a small parent of its
own. Both are checked: every
row's task message is in the queue, and (ours) the summary says every row was queued.

Figures (medians over the repeats): `bulk_enqueue_ratio` = our rows/s over the plain loop's
messages/s; `bulk_enqueue_rows_per_s`, `bulk_plain_send_task_per_s`; `bulk_peak_rss_mb`, the
largest peak RSS of our process.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.config import BulkParams
from bench.harness import worker_settings
from bench.scenarios.common import Context, ScenarioResult, order_ids, prefix
from tests.support.processes import REPO_ROOT, child_env
from worker.state.keys import RedisKeys

_SUMMARY = re.compile(r"^(\d+) queued, (\d+) coalesced into pending requests, (\d+) rejected")
# No Tango is called: nothing consumes the queue.
_NO_TANGO = "http://127.0.0.1:9/raas/v2"


def write_rows(path: Path, rows: int) -> int:
    """The file: `rows` distinct orders, each with a new email address; its size in bytes."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("referenceOrderID,newEmail\n")
        for index, order in enumerate(order_ids(rows)):
            handle.write(f"{order},customer.{index}@example.com\n")
    return path.stat().st_size


# Runs its arguments as a child and writes the child's own figures to the file named first.
# A small process of its own: a child's peak RSS counts the memory of the process it was
# forked from (until it execs), and the bench process is much larger than this one.
_MEASURE = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    json.dump({"exit_code": os.waitstatus_to_exitcode(status), "wall_seconds": wall,
               "cpu_seconds": usage.ru_utime + usage.ru_stime,
               "peak_rss_mb": usage.ru_maxrss / 1024}, out)  # Linux: kilobytes
"""


def run_child(
    arguments: list[str], settings: dict[str, str], log_dir: Path, name: str, timeout: float
) -> dict[str, Any]:
    """Run `python ARGUMENTS` to its end: exit code, stdout, wall and CPU seconds, peak RSS
    (of that process alone)."""
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    figures = log_dir / f"{name}.json"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(
            [sys.executable, "-c", _MEASURE, str(figures), sys.executable, *arguments],
            env=child_env(settings),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=err,
            timeout=timeout,
            check=True,
        )
    measured: dict[str, Any] = json.loads(figures.read_text())
    measured["stdout"] = out_path.read_text(errors="replace")
    measured["stderr_tail"] = err_path.read_text(errors="replace")[-2000:]
    return measured


def _settings(ctx: Context, kind: str) -> dict[str, str]:
    return worker_settings(
        redis_url=ctx.probe.url,
        prefix=prefix(f"bulk-{kind}"),
        base_url=_NO_TANGO,
        window_seconds=30,
    )


def _ours(ctx: Context, p: BulkParams, csv_path: Path, repeat: int) -> dict[str, Any]:
    settings = _settings(ctx, "ours")
    memory_before = ctx.probe.used_memory()
    done = run_child(
        ["-m", "worker", "enqueue", "--file", str(csv_path)],
        settings,
        ctx.log_dir,
        f"bulk-ours-{repeat}",
        p.timeout_seconds,
    )
    found = _SUMMARY.match(done["stdout"])
    if done["exit_code"] != 0 or not found or int(found.group(1)) != p.rows:
        raise RuntimeError(f"enqueue --file did not queue every row: {done}")
    queued = ctx.probe.client.llen(settings["RESEND_QUEUE"])
    stored = ctx.probe.client.zcard(RedisKeys(settings["REDIS_KEY_PREFIX"]).requests_by_time)
    if queued != p.rows or stored != p.rows:
        raise RuntimeError(f"{stored} requests stored and {queued} messages queued of {p.rows}")
    done["redis_bytes_per_row"] = (ctx.probe.used_memory() - memory_before) / p.rows
    return done


def _plain(ctx: Context, p: BulkParams, csv_path: Path, repeat: int) -> dict[str, Any]:
    settings = _settings(ctx, "plain")
    done = run_child(
        ["-m", "bench.bulk_plain", str(csv_path)],
        settings,
        ctx.log_dir,
        f"bulk-plain-{repeat}",
        p.timeout_seconds,
    )
    queued = ctx.probe.client.llen(settings["RESEND_QUEUE"])
    if done["exit_code"] != 0 or queued != p.rows:
        raise RuntimeError(f"the plain loop queued {queued} of {p.rows}: {done}")
    loop = json.loads(done["stdout"].strip().splitlines()[-1])
    done["loop_messages_per_s"] = loop["messages"] / loop["loop_seconds"]
    return done


def run(ctx: Context, p: BulkParams) -> ScenarioResult:
    csv_path = ctx.log_dir / "bulk-rows.csv"
    size = write_rows(csv_path, p.rows)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}
    measure = {"ours": _ours, "plain": _plain}
    for repeat in range(p.repeats):
        for kind in ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours"):
            ctx.probe.flush()
            done = measure[kind](ctx, p, csv_path, repeat)
            ctx.probe.flush()
            done.pop("stdout")
            done["rows_per_s"] = p.rows / done["wall_seconds"]
            done["cpu_ms_per_row"] = 1000 * done["cpu_seconds"] / p.rows
            runs[kind].append(done)
            ctx.say(
                f"{kind}: {p.rows:,} rows in {done['wall_seconds']:.1f} s "
                f"({done['rows_per_s']:,.0f}/s, {done['cpu_ms_per_row']:.3f} ms CPU a row), "
                f"peak RSS {done['peak_rss_mb']:.0f} MB"
            )
    ours = statistics.median(run["rows_per_s"] for run in runs["ours"])
    plain = statistics.median(run["rows_per_s"] for run in runs["plain"])
    peak = max(run["peak_rss_mb"] for run in runs["ours"])
    ctx.say(f"ratio {ours / plain:.2f}; our peak RSS {peak:.0f} MB")
    os.remove(csv_path)
    return ScenarioResult(
        metrics={
            "bulk_enqueue_ratio": ours / plain,
            "bulk_enqueue_rows_per_s": ours,
            "bulk_plain_send_task_per_s": plain,
            "bulk_peak_rss_mb": peak,
        },
        details={
            "rows": p.rows,
            "file_bytes": size,
            "ours_runs": runs["ours"],
            "plain_runs": runs["plain"],
            "ours_cpu_ms_per_row": statistics.median(r["cpu_ms_per_row"] for r in runs["ours"]),
            "plain_cpu_ms_per_row": statistics.median(r["cpu_ms_per_row"] for r in runs["plain"]),
            "plain_peak_rss_mb": max(run["peak_rss_mb"] for run in runs["plain"]),
        },
    )
