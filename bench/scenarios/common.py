"""What every scenario shares: its context, order ids, enqueueing, waiting."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    RedisProbe,
    Sandbox,
    Stack,
    WorkerProcess,
    new_tag,
    start_our_worker,
    start_peer_worker,
    use_settings,
    wait_for,
    worker_settings,
)
from worker.state.keys import RedisKeys

Fields = dict[str, str]
Item = tuple[str, Fields]  # (referenceOrderID, the request's other fields)

_run_numbers = itertools.count(1)


@dataclass
class ScenarioResult:
    """`metrics`: the issue's keys, for the top of latest.json; `details`: every other figure;
    `series`: what the plots draw (not written to latest.json)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    probe: RedisProbe
    log_dir: Path
    out_dir: Path
    verbose: bool = True
    # Settings every run adds (a TLS Redis's REDIS_TLS_CA_FILE, Sentinel's master name).
    redis_settings: Mapping[str, str] = field(default_factory=dict)

    def use_run_settings(
        self, scenario: str, *, base_url: str, window_seconds: float, **options: Any
    ) -> dict[str, str]:
        """Settings for one run of `scenario` (its own key prefix and queue, this Redis, the
        sandbox), made this process's too: the producer and the workers share them."""
        settings = worker_settings(
            redis_url=self.probe.url,
            prefix=prefix(scenario),
            base_url=base_url,
            window_seconds=window_seconds,
            **{**self.redis_settings, **options},
        )
        use_settings(settings)
        return settings

    def say(self, message: str) -> None:
        if self.verbose:
            print(f"  {message}", flush=True)

    def worker(
        self,
        stack: Stack,
        settings: Mapping[str, str],
        *,
        concurrency: int,
        peer: bool = False,
        **options: Any,
    ) -> WorkerProcess:
        """Our worker (with `peer`, bench.naive_app's) with `settings`, logging to this run's
        directory, ready; stopped with `stack`."""
        start = start_peer_worker if peer else start_our_worker
        worker = start(settings, self.log_dir, self.probe, concurrency=concurrency, **options)
        return stack.push(worker, worker.stop)

    def sandbox(
        self,
        stack: Stack,
        orders: Sequence[str],
        *,
        cooldown_seconds: float,
        rate_limit: float = 0.0,
        latency_seconds: float = 0.0,
        expected_calls: int = 0,
    ) -> Sandbox:
        # One queued latency fault per call; spares for the calls a run makes beyond one per
        # resend (cooldown errors, retries) so latency never silently drops to zero.
        latency_calls = 2 * expected_calls + 1000 if latency_seconds > 0 else 0
        sandbox = Sandbox(
            self.log_dir,
            orders=orders,
            cooldown_seconds=cooldown_seconds,
            rate_limit=rate_limit,
            latency_seconds=latency_seconds,
            latency_calls=latency_calls,
        )
        return stack.push(sandbox, sandbox.stop)


def order_ids(count: int) -> list[str]:
    """`count` fresh, valid Tango order numbers (RA + 6 digits + two numbers)."""
    run = next(_run_numbers) * 1000 + int(time.time()) % 1000
    return [f"RA251125-{run}-{index}" for index in range(count)]


def prefix(scenario: str) -> str:
    return f"bench-{scenario}-{new_tag()}"


def distinct_fields(order: str, index: int) -> Fields:
    """Fields that make each request of an order distinct (identical ones would coalesce)."""
    return {"newEmail": f"r{index}.{order.lower()}@example.com"}


def enqueue_ours(items: Sequence[Item]) -> float:
    """Submit through tango-resend's own API in this process; returns the seconds it took."""
    from worker.resend.producer import submit_resend

    started = time.perf_counter()
    for order, fields in items:
        submit_resend({"referenceOrderID": order, **fields})
    return time.perf_counter() - started


def enqueue_ours_ids(items: Sequence[Item]) -> list[str]:
    """Submit through tango-resend's own API in this process; returns the request ids."""
    from worker.resend.producer import submit_resend

    return [
        submit_resend({"referenceOrderID": order, **fields}).request_id for order, fields in items
    ]


def final_statuses(request_ids: Sequence[str]) -> dict[str, int]:
    """How many of the requests ended in each status (or `missing`)."""
    from worker.resend.producer import get_resend

    counts: dict[str, int] = {}
    for request_id in request_ids:
        record = get_resend(request_id)
        status = record.status.value if record is not None else "missing"
        counts[status] = counts.get(status, 0) + 1
    return counts


def _enqueue_chunk(settings: Mapping[str, str], items: Sequence[Item]) -> float:
    use_settings(settings)
    return enqueue_ours(items)


def enqueue_ours_parallel(
    settings: Mapping[str, str], items: Sequence[Item], processes: int = 2
) -> float:
    """Submit from `processes` producer processes at once; returns the wall seconds."""
    if processes <= 1 or len(items) < 1000:
        return enqueue_ours(items)
    chunks = [list(items[index::processes]) for index in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.starmap(_enqueue_chunk, [(dict(settings), chunk) for chunk in chunks])
    return time.perf_counter() - started


def enqueue_peer(task_name: str, queue: str, items: Sequence[Item]) -> float:
    """Send the peer's task, as its producer would: one message per resend."""
    from bench.naive_app import app

    started = time.perf_counter()
    for order, fields in items:
        app.send_task(task_name, args=[order, fields], queue=queue)
    return time.perf_counter() - started


def wait_ours_finished(probe: RedisProbe, key_prefix: str, timeout: float) -> None:
    """Every request finished: none is left in the due index."""
    due = RedisKeys(key_prefix).due_index
    wait_for(
        lambda: probe.client.zcard(due) == 0,
        timeout=timeout,
        interval=0.05,
        what="every request to finish",
    )


def wait_calls(sandbox: Sandbox, count: int, timeout: float) -> None:
    """The sandbox accepted `count` authenticated calls (then give answers a moment)."""
    wait_for(
        lambda: sandbox.accepted() >= count,
        timeout=timeout,
        interval=0.05,
        what=f"{count} calls to reach the sandbox",
    )


def wait_counter(probe: RedisProbe, key: str, count: int, timeout: float) -> None:
    wait_for(
        lambda: int(probe.client.get(key) or 0) >= count,
        timeout=timeout,
        interval=0.05,
        what=f"{key} to reach {count}",
    )
