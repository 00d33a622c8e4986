"""Workers SIGKILLed at random moments under load, several rounds, replacements started anew.

Every request must end sent; no call may land inside a window (Tango never answers 403.005);
each order's requests go out in enqueue order; and a request may be resent twice only if its
first call was in flight (sent, its outcome not yet recorded) when a worker was killed. Such
duplicates are counted and reported.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

import pytest
import redis

from tests.support.calls import accepted_sends, resend_calls, windows_respected
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


def in_flight_at(call: dict[str, Any], kills: list[float]) -> bool:
    """The call had reached Tango and its outcome could not yet be recorded at some kill."""
    answered = call["answered_at"] if call["answered_at"] is not None else float("inf")
    return any(call["received_at"] <= k <= answered + RECORDING_SLACK for k in kills)


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
    rng = random.Random(seed)
    orders = [f"RA251203-9001-{n:02d}" for n in range(ORDERS)]
    for order in orders:
        control.add_order(order)
        # Calls that take a while, so kills land on calls in flight too.
        control.inject_fault(order, delay_seconds=0.6, delay_phase="after", count=2)
    alive: list[WorkerProcess] = [
        start_worker(env, "a", concurrency=4),
        start_worker(env, "b", concurrency=4),
    ]

    expected: dict[str, tuple[str, str]] = {}  # request id -> (order, etid)
    kills: list[float] = []

    def enqueue_wave(n: int) -> None:
        for index, order in enumerate(orders):
            body = etid(index, n)
            expected[enqueue_resend(order, new_etid=body)] = (order, body)

    enqueue_wave(0)
    enqueue_wave(1)
    for number in range(ROUNDS):
        time.sleep(rng.uniform(0.2, 1.2))  # a random moment, not a wait for a state
        victim = alive.pop(rng.randrange(len(alive)))
        kills.append(time.time())
        victim.kill()
        alive.append(start_worker(env, f"r{number}", concurrency=4))
        if number == 2:
            enqueue_wave(2)

    ids = list(expected)
    done = wait_all_final(ids, timeout=90)
    assert {r.status.value for r in done} == {"sent"}, [r.reason for r in done]

    calls = resend_calls(control)
    by_body: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in accepted_sends(calls):
        by_body[(call["body"] or {}).get("newEtid", "")].append(call)
    duplicates, unexplained = 0, []
    for order_id, body in expected.values():
        sends = by_body[body]
        assert sends, f"{order_id} {body}: Tango never resent it"
        for extra in sends[:-1]:
            duplicates += 1
            if not in_flight_at(extra, kills):
                unexplained.append((order_id, body, extra["received_at"]))
    for index, order in enumerate(orders):
        order_calls = resend_calls(control, order)
        assert not windows_respected(order_calls, WINDOW), (order, seed)
        first_sends = []
        for call in accepted_sends(order_calls):
            body = call["body"]["newEtid"]
            if body not in first_sends:
                first_sends.append(body)
        assert first_sends == [etid(index, n) for n in range(PER_ORDER)], "per-order FIFO"
    in_flight = sum(in_flight_at(call, kills) for call in calls)
    report(
        "chaos",
        f"SIGKILL rounds: seed={seed} kills={len(kills)} calls={len(calls)} "
        f"in-flight-at-kill={in_flight} duplicate-resends={duplicates}",
    )
    assert unexplained == [], f"duplicates not explained by a kill (seed {seed})"
    assert duplicates <= in_flight
    assert control.stats()["rate_limited"] == 0
