"""Where a Celery worker process's CPU goes: a CPU-weighted stack sampler inside the worker.

`python bench/cost_sampler.py --root ROOT --out FILE --module worker -- worker --pool=threads ...`
runs `python -m worker worker ...` (or `--module celery -- -A bench.naive_app worker ...`) in
this process, with a background thread that, every `--interval` seconds (1 ms), reads each
thread's CPU clock (`pthread_getcpuclockid`) and its current stack (`sys._current_frames()`),
and adds the CPU the thread used since the last sample to the category of that stack (see
`Classifier`). Its own thread's CPU is the category `profiler`. Every `--snapshot` seconds it
records the cumulative figures with the wall clock, so a caller can take the CPU of any
stretch of the run (the drain, not the start-up); the JSON is written when the worker exits
(SIGTERM: Celery's warm shutdown ends in SystemExit, as for `bench.profile_worker`).

Only the standard library: the script runs against another checkout of the project (`--root`,
e.g. an earlier commit's worktree with its own virtualenv), whose `bench` lacks this module.

The GIL decides what such a sampler sees. It needs the GIL to read stacks, and at Python's
switch interval (5 ms) it gets it almost only when a thread lets it go for I/O (a socket send
or receive, a poll, a stat), so every sample finds the threads at an I/O call and charges the
CPU of everything since (our code between two Redis calls, Celery's bookkeeping) to that call's
library: our Python read 0.000 ms per resend. `--switch-interval` (e.g. 0.0001) makes a thread
that holds the GIL give it up that soon to a waiting one, the sampler included, so samples land
inside the running code; the extra GIL switches cost the worker CPU of their own (they are in
the figures, spread over the categories). Attribution stays statistical; totals are exact (the
clocks).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

OURS = "tango-resend (our Python)"
REDIS_CLIENT = "Redis client"
HTTP = "HTTP"
CELERY = "Celery"
OTHER = "other"
PROFILER = "profiler"
# Measured outside the worker (INFO cpu), but part of the split: see bench/scenarios/cost.py.
REDIS_SERVER = "Redis server"

# In the worker, in this order (the plot's order, with REDIS_SERVER after REDIS_CLIENT).
WORKER_CATEGORIES = (OURS, REDIS_CLIENT, HTTP, CELERY, OTHER)

_OWN_DIRS = ("worker", "tasks")
_PACKAGES = {
    "redis": REDIS_CLIENT,
    "hiredis": REDIS_CLIENT,
    "requests": HTTP,
    "urllib3": HTTP,
    "celery": CELERY,
    "kombu": CELERY,
    "billiard": CELERY,
    "amqp": CELERY,
    "vine": CELERY,
    "click": CELERY,
}
_SITE_DIRS = ("/site-packages/", "/dist-packages/")
_THIS_FILE = os.path.abspath(__file__)


@dataclass
class Classifier:
    """A frame's category from its file; a stack's from its innermost frame that has one.

    - the project's `worker/` and `tasks/` (under `root`): OURS;
    - the `redis` and `hiredis` packages: REDIS_CLIENT; `requests`, `urllib3` and the
      standard library's `http` package: HTTP; `celery`, `kombu`, `billiard`, `amqp`, `vine`,
      `click`: CELERY;
    - the project's other files (the plain task's `bench/naive_app.py`, this sampler): OTHER;
    - anything else, the rest of the standard library, other packages and built-in code
      (`<frozen ...>`), has none: its time goes to the first frame further out that has one.
      So `socket`, `ssl` and `email` (http.client's header parsing) count as HTTP under
      `requests`, `urllib3` or `http.client`, as the Redis client's under redis-py, and
      `json` or pydantic as ours when our code calls them.
    A stack with no frame that has a category is OTHER.
    """

    root: str
    stdlib: str = field(default_factory=lambda: sysconfig.get_paths()["stdlib"])
    _cache: dict[str, str | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = os.path.join(os.path.abspath(self.root), "")
        self._http = os.path.join(os.path.abspath(self.stdlib), "http", "")

    def file_category(self, filename: str) -> str | None:
        cached = self._cache.get(filename, "")
        if cached != "":
            return cached
        category = self._categorise(filename)
        self._cache[filename] = category
        return category

    def _categorise(self, filename: str) -> str | None:
        if not filename or filename.startswith("<"):
            return None
        path = filename.replace(os.sep, "/")
        for site in _SITE_DIRS:
            if site in path:
                package = path.rsplit(site, 1)[1].split("/", 1)[0].removesuffix(".py")
                return _PACKAGES.get(package)
        if filename.startswith(self._http):
            return HTTP
        if filename == _THIS_FILE:
            return None  # the sampler's own frames, outermost in the main thread: no category
        if filename.startswith(self.root) and not filename.startswith(self.stdlib):
            relative = filename[len(self.root) :].replace(os.sep, "/")
            top = relative.split("/", 1)[0]
            if top in _OWN_DIRS:
                return OURS
            return None if top.startswith(".") else OTHER  # .venv and the like: a library
        return None

    def stack_category(self, frame: FrameType | None) -> str:
        return self.stack_site(frame)[0]

    def stack_site(self, frame: FrameType | None) -> tuple[str, CodeType | None, CodeType | None]:
        """The stack's category, the code of the frame that decided it (None: no frame had a
        category) and the innermost frame's code."""
        inner = frame.f_code if frame is not None else None
        while frame is not None:
            category = self.file_category(frame.f_code.co_filename)
            if category is not None:
                return category, frame.f_code, inner
            frame = frame.f_back
        return OTHER, None, inner


class Sampler:
    """The background thread: CPU per category, cumulative, and snapshots of it over time."""

    def __init__(self, classifier: Classifier, interval: float, snapshot: float) -> None:
        self.classifier = classifier
        self.interval = interval
        self.snapshot_every = snapshot
        self.totals: dict[str, float] = dict.fromkeys((*WORKER_CATEGORIES, PROFILER), 0.0)
        # (time.time(), process CPU seconds, [cumulative seconds per category, in order])
        self.snapshots: list[tuple[float, float, list[float]]] = []
        self.samples = 0
        # (category, deciding frame's code, innermost frame's code) -> CPU seconds
        self.sites: dict[tuple[str, CodeType | None, CodeType | None], float] = {}
        self._clocks: dict[int, tuple[int, float]] = {}  # ident -> (clock id, CPU at last)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cost-sampler", daemon=True)
        self._started_at = 0.0
        self._stopped_at = 0.0

    def start(self) -> Sampler:
        self._started_at = time.time()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._stopped_at = time.time()

    def _refresh_threads(self, first: bool = False) -> None:
        me = threading.get_ident()
        alive = {thread.ident for thread in threading.enumerate() if thread.ident is not None}
        for ident in list(self._clocks):
            if ident not in alive:
                del self._clocks[ident]
        for ident in alive - self._clocks.keys() - {me}:
            try:
                clock = time.pthread_getcpuclockid(ident)
                # A thread that started since the last look: its CPU so far goes to where it
                # is now. One there before the sampler: only its CPU from now on.
                self._clocks[ident] = (clock, time.clock_gettime(clock) if first else 0.0)
            except (OSError, ProcessLookupError):
                continue

    def sample(self) -> None:
        frames = sys._current_frames()
        for ident, (clock, before) in list(self._clocks.items()):
            try:
                now = time.clock_gettime(clock)
            except OSError:  # the thread has exited
                del self._clocks[ident]
                continue
            used = now - before
            if used <= 0:
                continue
            self._clocks[ident] = (clock, now)
            site = self.classifier.stack_site(frames.get(ident))
            self.totals[site[0]] += used
            self.sites[site] = self.sites.get(site, 0.0) + used
        del frames
        self.samples += 1

    def _snapshot(self) -> None:
        self.totals[PROFILER] = time.thread_time()
        order = (*WORKER_CATEGORIES, PROFILER)
        self.snapshots.append(
            (time.time(), time.process_time(), [self.totals[name] for name in order])
        )

    def _run(self) -> None:
        self._refresh_threads(first=True)
        next_refresh = next_snapshot = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                self._refresh_threads()
                next_refresh = now + 0.05
            self.sample()
            if now >= next_snapshot:
                self._snapshot()
                next_snapshot = now + self.snapshot_every
            time.sleep(self.interval)
        self.sample()
        self._snapshot()

    def top_sites(self, limit: int = 12) -> dict[str, list[tuple[str, str, float]]]:
        return _top_sites(self.sites, limit)

    def result(self) -> dict[str, Any]:
        elapsed = max(self._stopped_at - self._started_at, 1e-9)
        return {
            "version": 1,
            "root": self.classifier.root,
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "hiredis_loaded": "hiredis" in sys.modules,
            "interval_seconds": self.interval,
            "switch_interval_seconds": sys.getswitchinterval(),
            "samples": self.samples,
            "mean_sample_interval_seconds": elapsed / max(self.samples, 1),
            "categories": [*WORKER_CATEGORIES, PROFILER],
            "totals_seconds": dict(self.totals),
            "process_cpu_seconds": time.process_time(),
            "top_sites": self.top_sites(),
            # [time.time(), process CPU seconds, [cumulative CPU seconds per category]]
            "snapshots": [[at, cpu, values] for at, cpu, values in self.snapshots],
        }


def _where(code: CodeType | None) -> str:
    if code is None:
        return "-"
    path = code.co_filename.replace(os.sep, "/")
    for site in _SITE_DIRS:
        path = path.rsplit(site, 1)[-1]
    return f"{code.co_name} ({'/'.join(path.split('/')[-2:])}:{code.co_firstlineno})"


def _top_sites(
    sites: dict[tuple[str, CodeType | None, CodeType | None], float], limit: int
) -> dict[str, list[tuple[str, str, float]]]:
    """Per category, where its CPU was seen most: (deciding frame, innermost frame, seconds)."""
    by_category: dict[str, list[tuple[str, str, float]]] = {}
    for (category, decided, inner), seconds in sorted(sites.items(), key=lambda item: -item[1]):
        rows = by_category.setdefault(category, [])
        if len(rows) < limit:
            rows.append((_where(decided), _where(inner), seconds))
    return by_category


def _arguments(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cost_sampler.py", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="the project's checkout")
    parser.add_argument("--out", type=Path, required=True, help="the JSON, written at exit")
    parser.add_argument("--module", required=True, help="what `python -m` would run: worker")
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--snapshot", type=float, default=0.02)
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.0,
        help="sys.setswitchinterval for the worker (0: Python's, 5 ms); see the docstring",
    )
    parser.add_argument("module_args", nargs=argparse.REMAINDER)
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> None:
    args = _arguments(argv)
    root = str(args.root.resolve())
    # Run as a script, this file's directory (some checkout's bench/) would come first on
    # sys.path: the project's root instead, as for `python -m`.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [root, *(entry for entry in sys.path if entry not in (here, root))]
    module_args = [arg for arg in args.module_args if arg != "--"]
    if args.switch_interval > 0:
        sys.setswitchinterval(args.switch_interval)
    sampler = Sampler(Classifier(root), args.interval, args.snapshot).start()
    sys.argv = [args.module, *module_args]
    try:
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        sampler.stop()
        args.out.write_text(json.dumps(sampler.result()) + "\n")


if __name__ == "__main__":
    main()
