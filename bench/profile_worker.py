"""Run `tango-resend worker` under pyinstrument and write its report when the worker stops.

`python -m bench.profile_worker --out report.txt [--html report.html] -- worker --pool=solo ...`

pyinstrument samples the thread it was started in, so the worker is meant to run with the solo
pool: consumer, task and outcome all run in the main thread and all show in the report.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame

_OWN = ("worker/", "tasks/")


def _library(frame: Frame) -> str:
    """The package a frame's code belongs to: ours, a site-package, the stdlib or built-in."""
    path = frame.file_path or ""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for own in _OWN:
        if f"/{own}" in path or path.startswith(own):
            return own.rstrip("/")
    if not path or path.startswith("<"):
        return "<built-in>"
    return "stdlib:" + Path(path).stem


def _walk(frame: Frame, visit: list[Frame]) -> None:
    if frame.is_synthetic:
        return  # "[self]" frames: their time is already their parent's self time
    visit.append(frame)
    for child in frame.children:
        _walk(child, visit)


def flat_report(root: Frame, total: float) -> str:
    """Self time by library and by function, and inclusive time of our own functions."""
    frames: list[Frame] = []
    _walk(root, frames)
    by_library: dict[str, float] = defaultdict(float)
    by_function: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    for frame in frames:
        own_time = frame.total_self_time
        name = f"{frame.function}  {frame.file_path_short}:{frame.line_no}"
        by_library[_library(frame)] += own_time
        by_function[name] += own_time
        if _library(frame) in ("worker", "tasks"):
            # Count a function once per stack: skip frames nested in the same function.
            parent, nested = frame.parent, False
            while parent is not None:
                if parent.function == frame.function and parent.file_path == frame.file_path:
                    nested = True
                    break
                parent = parent.parent
            if not nested:
                inclusive[name] += frame.time

    def table(title: str, rows: dict[str, float], limit: int) -> list[str]:
        lines = [title, "-" * len(title)]
        for name, seconds in sorted(rows.items(), key=lambda item: -item[1])[:limit]:
            lines.append(f"{seconds:8.3f} s {100 * seconds / total:5.1f} %  {name}")
        return [*lines, ""]

    return "\n".join(
        [
            *table("Self time by library (wall time of the worker's main thread)", by_library, 25),
            *table("Self time by function", by_function, 40),
            *table("Inclusive time of tango-resend's own functions", inclusive, 40),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker")
    parser.add_argument("--out", type=Path, required=True, help="text report")
    parser.add_argument("--html", type=Path, default=None, help="also an HTML report")
    parser.add_argument("--interval", type=float, default=0.0005)
    parser.add_argument("worker_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    worker_args = [arg for arg in args.worker_args if arg != "--"]

    from worker.cli.entry import main as tango_resend

    profiler = Profiler(interval=args.interval)
    sys.argv = ["tango-resend", *worker_args]
    profiler.start()
    try:
        tango_resend()
    except SystemExit:
        pass
    finally:
        profiler.stop()
        text = profiler.output_text(unicode=True, color=False, show_all=False)
        session = profiler.last_session
        root = session.root_frame() if session is not None else None
        if root is not None and session is not None:
            text += "\n\n" + flat_report(root, session.duration)
        args.out.write_text(text)
        if args.html is not None:
            args.html.write_text(profiler.output_html())


if __name__ == "__main__":
    main()
