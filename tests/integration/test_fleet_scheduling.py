"""Fleet-wide rules with several real workers: rate limit, per-order FIFO, coalescing,
cancel, parking and its release, crashes, and hosts whose clocks disagree."""

from __future__ import annotations

import re
from itertools import pairwise

import libfaketime
import pytest

from tests.support.calls import LATENESS_ALLOWED, resend_calls
from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.sandbox import WINDOW_SECONDS
from tests.support.waiting import wait_for
from worker import cancel_resend, enqueue_resend, get_resend
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration


def test_rate_limit_is_shared_by_the_fleet_and_used_to_the_full(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given Tango allowing 5 calls/s and a backlog, two workers make no 429 and use >= 90%."""
    control.configure(rate_limit=5)
    orders = [f"RA251125-1301-{n:02d}" for n in range(30)]
    for order in orders:
        control.add_order(order)
    start_worker("a", TANGO_RATE_LIMIT="5")
    start_worker("b", TANGO_RATE_LIMIT="5")

    ids = [enqueue_resend(order) for order in orders]
    wait_for(lambda: finished(ids), timeout=30, what="the backlog to drain")

    calls = [c for c in control.calls() if c["path"].endswith("/resends")]
    first = min(c["received_at"] for c in calls)
    timeline = [(round(c["received_at"] - first, 3), c["status"]) for c in calls]
    assert [c["status"] for c in calls].count(429) == 0, f"arrivals (s, status): {timeline}"
    assert control.stats()["rate_limited"] == 0
    arrivals = sorted(c["received_at"] for c in calls)
    achieved = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert achieved >= 0.9 * 5, f"achieved {achieved:.2f} calls/s"
    assert achieved <= 5.0


def test_four_requests_for_one_order_go_in_enqueue_order_with_four_workers(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    order = "RA251125-1401-01"
    control.add_order(order)
    for name in "abcd":
        start_worker(name, concurrency=4)

    ids = [enqueue_resend(order, new_etid=f"E00000{n}") for n in range(1, 5)]
    wait_for(lambda: finished(ids), timeout=8 * WINDOW_SECONDS + 10, what="all four sent")

    calls = resend_calls(control, order)
    assert [c["body"]["newEtid"] for c in calls] == ["E000001", "E000002", "E000003", "E000004"]
    assert [c["status"] for c in calls] == [201] * 4
    for previous, current in pairwise(calls):
        gap = current["received_at"] - previous["answered_at"]
        assert WINDOW_SECONDS <= gap <= WINDOW_SECONDS + LATENESS_ALLOWED


def test_identical_pending_requests_are_coalesced(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    order = "RA251125-1501-01"
    control.add_order(order)
    first = enqueue_resend(order, new_email="pat@example.com")
    second = enqueue_resend(order, new_email="pat@example.com")
    different = enqueue_resend(order, new_email="pat.other@example.com")
    assert second == first and different != first
    start_worker()

    wait_for(lambda: finished([first, different]), timeout=10, what="both sent")
    record = get_resend(first)
    assert record is not None and record.merges == 1
    assert len(resend_calls(control, order)) == 2
    # Once sent, the same request again is a new resend, not a merge.
    assert enqueue_resend(order, new_email="pat@example.com") != first


def test_cancelling_a_deferred_request_keeps_it_from_tango(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    order = "RA251125-1601-01"
    control.add_order(order)
    start_worker()
    control.portal_resend(order)  # our request meets the cooldown and is deferred
    request_id = enqueue_resend(order)

    def deferred() -> bool:
        record = get_resend(request_id)
        return record is not None and record.status.value == "deferred"

    wait_for(deferred, timeout=10, what="the request to be deferred")
    assert cancel_resend(request_id) == "cancelled"
    assert cancel_resend(request_id) == "cancelled"  # already cancelled: says so again
    later = enqueue_resend(order, new_etid="E000009")  # the order goes on without it
    wait_for(lambda: finished([later]), timeout=10, what="the later request")

    record = get_resend(request_id)
    assert record is not None and record.status.value == "cancelled"
    calls = resend_calls(control, order)
    assert [c["status"] for c in calls] == [403, 201]
    assert calls[1]["body"] == {"newEtid": "E000009"}


def test_a_parked_request_is_released_once_with_three_schedulers(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given every wait parked in Redis, three workers' schedulers release it exactly once."""
    order = "RA251125-1701-01"
    control.add_order(order)
    workers = [start_worker(name) for name in "xyz"]
    first = enqueue_resend(order, new_etid="E000001")
    second = enqueue_resend(order, new_etid="E000002")

    wait_for(lambda: finished([first, second]), timeout=15, what="both sent")

    logs = "".join(worker.log() for worker in workers)
    received = re.findall(rf"send_resend\[{second}\] received", logs)
    assert len(received) == 1, "parked behind the first, then released exactly once"
    calls = resend_calls(control, order)
    assert [c["status"] for c in calls] == [201, 201]
    gap = calls[1]["received_at"] - calls[0]["answered_at"]
    assert WINDOW_SECONDS <= gap <= WINDOW_SECONDS + LATENESS_ALLOWED


def test_sigkill_while_requests_are_parked_and_deferred_strands_nothing(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    orders = [f"RA251125-1801-{n:02d}" for n in range(6)]
    for order in orders:
        control.add_order(order)
    doomed = start_worker("doomed")
    ids = [enqueue_resend(order, new_etid=f"E00000{n}") for order in orders for n in (1, 2, 3)]
    wait_for(
        lambda: sum(c["status"] == 201 for c in control.calls()) >= 6,
        timeout=10,
        what="the first round",
    )
    doomed.kill()
    start_worker("rescuer")

    records = wait_for(lambda: finished(ids), timeout=60, what="every request to finish")
    assert {r.status.value for r in records} == {"sent"}
    assert all(c["status"] != 403 for c in control.calls())


def test_hosts_with_skewed_clocks_keep_order_and_window(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given workers 5 s ahead and 5 s behind (and Tango ahead too), timing still holds."""
    control.configure(cooldown_seconds=WINDOW_SECONDS)
    _, faketime_env = libfaketime.get_reload_information()
    order = "RA251125-1901-01"
    control.add_order(order)
    start_worker("ahead", **faketime_env, FAKETIME="+5s")
    start_worker("behind", **faketime_env, FAKETIME="-5s")

    ids = [enqueue_resend(order, new_etid=f"E00000{n}") for n in range(1, 5)]
    wait_for(lambda: finished(ids), timeout=8 * WINDOW_SECONDS + 15, what="all sent")

    calls = resend_calls(control, order)
    assert [c["status"] for c in calls] == [201] * 4
    for previous, current in pairwise(calls):
        gap = current["received_at"] - previous["answered_at"]
        assert WINDOW_SECONDS <= gap <= WINDOW_SECONDS + LATENESS_ALLOWED
