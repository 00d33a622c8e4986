"""Run `tango-resend worker` under pyinstrument and write its report when the worker stops.

`python -m bench.profile_worker --out report.txt [--html report.html] -- worker --pool=solo ...`

pyinstrument samples the thread it was started in, so the worker is meant to run with the solo
pool: consumer, task and outcome all run in the main thread and all show in the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyinstrument import Profiler


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker")
    parser.add_argument("--out", type=Path, required=True, help="text report")
    parser.add_argument("--html", type=Path, default=None, help="also an HTML report")
    parser.add_argument("--interval", type=float, default=0.0005)
    parser.add_argument("worker_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    worker_args = [arg for arg in args.worker_args if arg != "--"]

    from worker.cli import main as tango_resend

    profiler = Profiler(interval=args.interval)
    sys.argv = ["tango-resend", *worker_args]
    profiler.start()
    try:
        tango_resend()
    except SystemExit:
        pass
    finally:
        profiler.stop()
        args.out.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        if args.html is not None:
            args.html.write_text(profiler.output_html())


if __name__ == "__main__":
    main()
