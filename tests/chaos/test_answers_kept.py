"""Tango's answer is a fact: a run holding it while Redis is away keeps it and stores it once
Redis is back; writes Redis takes back (a restart from an older snapshot) cost no second
resend while the run holding the answer lives; a single Redis with `appendfsync always`,
killed and restarted under load, loses nothing and resends nothing twice.

Each test runs a redis-server of its own; the shared Redis is never touched.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.test_redis_faults import SECRET, Load, check_outcome, orders_in
from tests.support.calls import accepted_sends, resend_calls, windows_respected
from tests.support.findings import report
from tests.support.processes import WebFactory, WorkerFactory, WorkerProcess
from tests.support.records import all_final, wait_all_final
from tests.support.redis_server import RedisServer
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.queueing.app import RESEND_TASK_NAME, app
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.chaos

WINDOW = 2.0


def _first_call_received(control: SandboxControl, order: str) -> float:
    calls: list[dict[str, Any]] = []

    def received() -> bool:
        calls[:] = resend_calls(control, order)
        return bool(calls)

    wait_for(received, timeout=30, interval=0.02, what="the call to reach Tango")
    return float(calls[0]["received_at"])


def _sleep_until(moment: float) -> None:
    # Timing the fault against Tango's stalled answer is the point here, not a wait for state.
    time.sleep(max(0.0, moment - time.time()))


def test_an_answer_received_while_redis_is_away_is_kept_and_stored_once_it_is_back(
    own_redis: RedisServer,
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
) -> None:
    """Given a call out, when Redis stops 1 s later for longer than a window and Tango's 201
    arrives meanwhile, then the run keeps the answer and stores it when Redis is back: one
    resend, Tango's request id on the record, the call dated when it was made, no probe."""
    order = "RA251206-2306-01"
    control.configure(cooldown_seconds=WINDOW)
    control.add_order(order)
    # Tango resends at once and answers 2 s later: inside the outage.
    control.inject_fault(order, delay_seconds=2.0, delay_phase="after")
    env = configure(
        redis_url=own_redis.url(),
        RESEND_COOLDOWN_SECONDS=f"{WINDOW:g}",
        TANGO_TIMEOUT_SECONDS="5",
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    worker = start_worker(env, "w1", concurrency=2)
    request_id = enqueue_resend(order, new_etid="E000006")
    received_at = _first_call_received(control, order)
    _sleep_until(received_at + 1.0)
    down_at = time.time()
    own_redis.stop()
    wait_for(
        lambda: resend_calls(control, order)[0]["answered_at"] is not None,
        timeout=30,
        what="Tango's answer, while Redis is away",
    )
    _sleep_until(down_at + WINDOW + 1.0)  # away for longer than a window
    own_redis.start()

    (record,) = wait_all_final([request_id], timeout=30)
    calls = resend_calls(control, order)
    assert record.status.value == "sent"
    assert [(c["status"], bool(c.get("probe"))) for c in calls] == [(201, False)]
    assert record.tango_request_ids == [calls[0]["requestId"]]
    (entry,) = record.attempt_log
    assert abs(entry.at.timestamp() - received_at) < 0.5, "dated when the call was made"
    assert "will run again" not in worker.log(), "the answer was dropped"


def test_after_a_sigkill_the_replacement_finds_the_stored_answer_and_never_probes(
    own_redis: RedisServer,
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
) -> None:
    """The run that held the answer through the outage stored it; its worker is then killed.
    A replacement, and any redelivery of the request's task, find the answer stored: the
    request stays `sent`, and Tango sees no probe and no second call."""
    order = "RA251206-2307-01"
    control.configure(cooldown_seconds=WINDOW)
    control.add_order(order)
    control.inject_fault(order, delay_seconds=1.5, delay_phase="after")
    env = configure(
        redis_url=own_redis.url(),
        RESEND_COOLDOWN_SECONDS=f"{WINDOW:g}",
        TANGO_TIMEOUT_SECONDS="5",
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    worker = start_worker(env, "w1", concurrency=2)
    request_id = enqueue_resend(order, new_etid="E000007")
    received_at = _first_call_received(control, order)
    _sleep_until(received_at + 0.5)
    own_redis.stop()
    _sleep_until(received_at + 2.5)  # the answer came at +1.5, Redis was away
    own_redis.start()
    wait_all_final([request_id], timeout=30)
    worker.kill()

    replacement: WorkerProcess = start_worker(env, "w2", concurrency=2)
    # The request's task again, as a redelivery after the kill would bring it.
    app.send_task(RESEND_TASK_NAME, args=[request_id], queue=env["RESEND_QUEUE"])
    control.add_order("RA251206-2307-02")
    other = enqueue_resend("RA251206-2307-02")
    wait_all_final([other], timeout=30)  # the replacement works, so it saw the redelivery too
    calls = resend_calls(control, order)
    assert [(c["status"], bool(c.get("probe"))) for c in calls] == [(201, False)]
    assert "probing Tango" not in replacement.log()


def test_a_lost_go_costs_no_second_resend_while_the_run_holding_the_answer_lives(
    tmp_path: Path,
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
) -> None:
    """Redis crashes mid-call and restarts from a snapshot taken before the run passed the
    gate: the "go" (window held, call in flight) is lost, and the request's task is back in
    the queue. The run holding Tango's 201 (it came while Redis was down) stores it: an
    answer in hand is a fact, whichever run holds the request now. One resend. (Before, the
    answer was dropped; the rerun made a plain call, took Tango's cooldown for someone
    else's resend, waited out the window and resent: twice.)"""
    server = RedisServer(tmp_path / "snapshots", extra_args=("--appendonly", "no")).start()
    # Longer than the outage, as production's 30 s window is than a restart: a rerun that
    # calls blind before the answer is stored meets Tango's cooldown, not a second resend.
    window = 6.0
    try:
        order = "RA251206-2308-01"
        control.configure(cooldown_seconds=window)
        control.add_order(order)
        control.inject_fault(order, delay_seconds=1.0, delay_phase="after")
        env = configure(
            redis_url=server.url(),
            RESEND_COOLDOWN_SECONDS=f"{window:g}",
            TANGO_TIMEOUT_SECONDS="5",
            TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
        )
        request_id = enqueue_resend(order, new_etid="E000008")  # no worker yet: it waits
        with contextlib.closing(server.client()) as client:
            client.save()  # the snapshot: the request queued, its task in the queue
        worker = start_worker(env, "w1", concurrency=4)
        received_at = _first_call_received(control, order)
        _sleep_until(received_at + 0.5)
        assert server.process is not None
        server.process.kill()  # a crash: every write since the snapshot is gone
        server.process.wait(timeout=10)
        _sleep_until(received_at + 2.0)  # Tango's 201 (at +1 s) arrives while it is down
        server.start()

        (record,) = wait_all_final([request_id], timeout=40)
        # A second resend, if any, would come after Tango's window.
        _sleep_until(received_at + window + 1.0)
        calls = resend_calls(control, order)
        sends = accepted_sends(calls)
        report("chaos", f"lost go: calls={[c['status'] for c in calls]}")
        assert record.status.value == "sent"
        assert len(sends) == 1, f"{len(sends)} resends: {[c['status'] for c in calls]}"
        assert record.tango_request_ids[0] == sends[0]["requestId"]
        assert worker.process.poll() is None
    finally:
        server.stop()


def test_a_single_redis_with_aof_always_killed_and_restarted_under_load_loses_nothing(
    tmp_path: Path,
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    start_web: WebFactory,
) -> None:
    """`appendfsync always`: every write Redis acknowledged is on disk before the answer. A
    SIGKILL while webhooks and API enqueues arrive and calls are in flight, then a restart:
    every request that got a 202 or an id is sent, once, each order's windows kept."""
    server = RedisServer(tmp_path / "always", appendfsync="always").start()
    try:
        orders = orders_in(control, "2309", 4, delay_seconds=1.0, delay_phase="after", count=2)
        env = configure(
            redis_url=server.url(),
            WEBHOOK_SECRET=SECRET,
            TANGO_TIMEOUT_SECONDS="3",
            TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
        )
        worker = start_worker(env, "w1", concurrency=6)
        load = Load(orders, start_web(env))
        load.wave()
        wait_for(
            lambda: any(c["status"] is None for c in control.calls()),
            timeout=15,
            what="calls in flight",
        )
        assert server.process is not None
        down_at = time.time()
        server.process.kill()
        server.process.wait(timeout=10)
        time.sleep(0.5)  # an outage: the answers in flight arrive while Redis is away
        server.start()
        up_at = time.time()
        load.wave()

        def alive_and_done() -> object:
            assert worker.process.poll() is None, worker.log()[-3000:]
            return all_final(list(load.expected))

        wait_for(alive_and_done, timeout=90, interval=0.1, what="all final")
        duplicates, unexplained = check_outcome(load, control, [down_at, up_at])
        report("chaos", f"AOF always, SIGKILL + restart: duplicates={duplicates}")
        assert duplicates == 0 and unexplained == []
        for order in orders:
            assert not windows_respected(resend_calls(control, order), 1.5)
    finally:
        server.stop()
