"""The sandbox as a benchmark subprocess: orders from a file, latency as queued faults.

Prints `READY <control url>` once serving; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from worker.sandbox import SandboxServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_proc")
    parser.add_argument("--cooldown", type=float, required=True)
    parser.add_argument("--rate-limit", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--latency-calls", type=int, default=0)
    parser.add_argument("--orders-file", type=Path, required=True)
    parser.add_argument("--platform-name", required=True)
    parser.add_argument("--platform-key", required=True)
    args = parser.parse_args()

    server = SandboxServer(
        cooldown_seconds=args.cooldown,
        rate_limit=args.rate_limit,
        platform_name=args.platform_name,
        platform_key=args.platform_key,
    )
    for order in args.orders_file.read_text().split():
        server.state.add_order(order, email="bench@example.com")
    if args.latency > 0 and args.latency_calls > 0:
        # The sandbox has no latency option: a fault for any order that stalls the call
        # before processing it is exactly that, one queued fault per expected call.
        server.state.inject_fault("*", delay_seconds=args.latency, count=args.latency_calls)

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    print(f"READY {server.control_url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    main()
