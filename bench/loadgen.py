"""Sandbox capacity probe: `threads` threads making the resend call as fast as they can.

`python -m bench.loadgen --base-url URL --orders-file F --threads C --seconds T` prints one JSON
line: {"calls": n, "seconds": t, "calls_per_s": n/t}. Same HTTP session setup as the worker, no
Celery, no Redis: what the sandbox answers when nothing else is in the way (the client's own
CPU is the limit if anything, so the figure is a lower bound of the sandbox's capacity).
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from pathlib import Path

from worker.tango.client import build_session


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--orders-file", type=Path, required=True)
    parser.add_argument("--platform-name", required=True)
    parser.add_argument("--platform-key", required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    orders = args.orders_file.read_text().split()
    session = build_session(args.threads)
    token = base64.b64encode(f"{args.platform_name}:{args.platform_key}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    lock = threading.Lock()
    counter = {"next": 0, "done": 0}
    deadline = time.monotonic() + args.seconds

    def run() -> None:
        while time.monotonic() < deadline:
            with lock:
                index = counter["next"]
                counter["next"] += 1
            order = orders[index % len(orders)]
            session.post(
                f"{args.base_url}/orders/{order}/resends",
                json={"newEmail": "bench@example.com"},
                headers=headers,
                timeout=(3, 10),
            )
            with lock:
                counter["done"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    done = counter["done"]
    print(json.dumps({"calls": done, "seconds": elapsed, "calls_per_s": done / elapsed}))


if __name__ == "__main__":
    main()
