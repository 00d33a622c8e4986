"""Workers SIGKILLed at random moments under load, several rounds, replacements started anew.

Every request must end sent; no call may land inside a window (Tango never answers 403.005);
each order's requests go out in enqueue order; and a request may be resent twice only if its
first call was in flight (sent, its outcome not yet recorded) when a worker was killed. Such
duplicates are counted and reported.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable

import pytest
import redis

from tests.support.calls import (
    duplicate_sends,
    first_sends,
    in_flight_at,
    resend_calls,
    windows_respected,
)
from tests.support.findings import chaos_seed, report
from tests.support.processes import WorkerFactory, WorkerProcess
from tests.support.records import wait_all_final
from tests.support.settings import Configure
from worker import enqueue_resend
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.chaos

WINDOW = 1.5
ORDERS = 8
PER_ORDER = 3
ROUNDS = 6
# After Tango answers, the worker records the outcome within this long (a loaded machine).
RECORDING_SLACK = 2.0


def etid(order_index: int, n: int) -> str:
    return f"E{order_index:03d}{n:03d}"


def kill_one_at_random(
    alive: list[WorkerProcess], rng: random.Random, replacement: Callable[[], WorkerProcess]
) -> float:
    """At a random moment, SIGKILL a random worker and start its `replacement`; returns when
    the kill was sent."""
    time.sleep(rng.uniform(0.2, 1.2))  # a random moment, not a wait for a state
    victim = alive.pop(rng.randrange(len(alive)))
    killed_at = victim.kill()
    alive.append(replacement())
    return killed_at


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_only_in_flight_calls(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    env = configure(
        TANGO_TIMEOUT_SECONDS="1.5",
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
        TANGO_RATE_LIMIT="10",
    )
    control.configure(rate_limit=12)
    seed = chaos_seed()
    orders = [f"RA251203-9001-{n:02d}" for n in range(ORDERS)]
    for order in orders:
        control.add_order(order)
        # Calls that take a while, so kills land on calls in flight too.
        control.inject_fault(order, delay_seconds=0.6, delay_phase="after", count=2)
    alive = [start_worker(env, "a", concurrency=4), start_worker(env, "b", concurrency=4)]

    expected: dict[str, tuple[str, str]] = {}  # request id -> (order, etid)

    def enqueue_wave(n: int) -> None:
        for index, order in enumerate(orders):
            body = etid(index, n)
            expected[enqueue_resend(order, new_etid=body)] = (order, body)

    enqueue_wave(0)
    enqueue_wave(1)
    rng = random.Random(seed)
    kills: list[float] = []
    for number in range(ROUNDS):
        replacement = functools.partial(start_worker, env, f"r{number}", concurrency=4)
        kills.append(kill_one_at_random(alive, rng, replacement))
        if number == 2:
            enqueue_wave(2)

    done = wait_all_final(list(expected), timeout=90)
    assert {r.status.value for r in done} == {"sent"}, [r.reason for r in done]

    calls = resend_calls(control)
    duplicates, unexplained = duplicate_sends(expected, calls, kills, RECORDING_SLACK)
    for index, order in enumerate(orders):
        order_calls = resend_calls(control, order)
        assert not windows_respected(order_calls, WINDOW), (order, seed)
        assert first_sends(order_calls) == [etid(index, n) for n in range(PER_ORDER)], (
            "per-order FIFO"
        )
    in_flight = sum(in_flight_at(call, kills, RECORDING_SLACK) for call in calls)
    report(
        "chaos",
        f"SIGKILL rounds: seed={seed} kills={len(kills)} calls={len(calls)} "
        f"in-flight-at-kill={in_flight} duplicate-resends={duplicates}",
    )
    assert unexplained == [], f"duplicates not explained by a kill (seed {seed})"
    assert duplicates <= in_flight
    assert control.stats()["rate_limited"] == 0
