"""`python -m bench.bulk_plain FILE`: the plain way to queue a CSV of resends, the baseline of
the `bulk` scenario.

A loop of Celery `send_task` calls, one per row of FILE (read with the `csv` module, as
`tango-resend enqueue --file` reads it), each the peer's plain task (`bench.naive_app`, the
same Celery configuration as tango-resend's) with the row's order and fields as arguments:
no validation, no record, no idempotency, no coalescing. Configured from the environment
(REDIS_URL, RESEND_QUEUE). Prints one JSON line: messages sent and the seconds the loop took.
"""

from __future__ import annotations

import csv
import json
import sys
import time

from bench.naive_app import PLAIN_TASK, app
from worker.core.settings import get_settings


def main(path: str) -> int:
    queue = get_settings().resend_queue
    started = time.perf_counter()
    sent = 0
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            order = row.pop("referenceOrderID")
            app.send_task(PLAIN_TASK, args=[order, row], queue=queue)
            sent += 1
    print(json.dumps({"messages": sent, "loop_seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
