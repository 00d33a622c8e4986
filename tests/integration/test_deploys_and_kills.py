"""Rolling deploys and crashes with real workers: new names, SIGTERM to the old ones, SIGKILL.

Every wait lives in Redis's due index, so a worker that goes away strands nothing: a deploy
costs no request more than a moment past its window end or rate-limit slot, and a SIGKILL
costs the requests it held one short lease (`RESEND_LEASE_SECONDS`), not the broker's
visibility timeout. These run with the production visibility timeout (300 s) on purpose: a
request that had to wait for it would time the test out.
"""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

import pytest

from tests.support.calls import LATENESS_ALLOWED, resend_calls
from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.sandbox import WINDOW_SECONDS
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.sandbox import SandboxControl
from worker.state.gate import RATE_HEADROOM

pytestmark = pytest.mark.integration

PRODUCTION_VISIBILITY = {"BROKER_VISIBILITY_TIMEOUT_SECONDS": "300"}
# The bounds: a deploy delays no request more than this past its window end or slot,
DEPLOY_LATENESS_ALLOWED = 2.0
# a rate-limited backlog never pauses longer than this while a deploy runs,
DEPLOY_PAUSE_ALLOWED = 5.0
# and after a SIGKILL, what the dead worker held (not in flight) runs again within this.
KILL_RECOVERY_ALLOWED = 30.0


def all_resend_calls(control: SandboxControl) -> list[dict[str, Any]]:
    return [call for call in control.calls() if call["path"].endswith("/resends")]


def test_rolling_deploy_under_a_rate_limited_backlog_keeps_every_slot(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given a backlog at 3 calls/s, some orders waiting out a window opened in Tango's portal,
    When a new worker starts under a new name and the old one gets SIGTERM, Then the calls
    keep to their slots (each no more than 2 s late on a steady stream), the stream never
    pauses more than 5 s, and nothing meets a cooldown more than once."""
    rate = 3.0
    control.configure(rate_limit=rate + 1)
    # ~12 s of calls at 3/s; the deploy (the old worker's SIGTERM) comes after the first 8.
    backlog = [f"RA251126-2001-{n:02d}" for n in range(36)]
    windowed = [f"RA251126-2002-{n:02d}" for n in range(3)]
    for order in backlog + windowed:
        control.add_order(order)
    for order in windowed:
        control.portal_resend(order)  # their first call meets the window, then waits it out
    old = start_worker("old", TANGO_RATE_LIMIT=str(rate), **PRODUCTION_VISIBILITY)
    # The new worker is up before the old one gets SIGTERM, as in a rolling deploy. Its start
    # (slow on a loaded machine) comes before the backlog: started after, it could find the
    # backlog drained, and the deploy test nothing.
    start_worker("new", TANGO_RATE_LIMIT=str(rate), **PRODUCTION_VISIBILITY)
    ids = [enqueue_resend(order) for order in windowed + backlog]
    wait_for(lambda: len(all_resend_calls(control)) >= 8, timeout=20, what="the backlog to start")

    deploy_started = time.time()
    old.stop(timeout=60)  # SIGTERM: warm shutdown (a loaded machine's may be slow: no SIGKILL)
    assert "Restoring" in old.log() or old.process.returncode == 0
    wait_for(lambda: finished(ids), timeout=len(ids) / rate + 40, what="the backlog to drain")

    records = finished(ids)
    assert records is not None and {r.status.value for r in records} == {"sent"}
    calls = all_resend_calls(control)
    arrivals = sorted(call["received_at"] for call in calls)
    # The deploy happened under the backlog, or this tested nothing.
    after_deploy = [arrival for arrival in arrivals if arrival >= deploy_started]
    assert len(after_deploy) >= 5, f"the backlog drained before the deploy: {len(after_deploy)}"
    interval = RATE_HEADROOM / rate
    # A steady backlog takes one slot per interval: the k-th call is due k intervals after
    # the first, and a deploy may make it at most DEPLOY_LATENESS_ALLOWED later than that.
    for k, arrival in enumerate(arrivals):
        assert arrival - arrivals[0] <= k * interval + DEPLOY_LATENESS_ALLOWED, (k, arrival)
    pauses = [b - a for a, b in pairwise(arrivals) if b >= deploy_started - 1]
    assert max(pauses) <= DEPLOY_PAUSE_ALLOWED
    for order in windowed:
        # Met once at most (a first call made after the portal's window ended meets none).
        statuses = [call["status"] for call in resend_calls(control, order)]
        assert statuses in ([403, 201], [201]), (order, statuses)
    assert control.stats()["rate_limited"] == 0


def test_rolling_deploy_during_window_waits_makes_no_wait_late(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given orders whose next requests wait out a window, When the worker holding them is
    replaced (new name, SIGTERM), Then each next call comes one window after the previous
    answer, never earlier and at most 2 s later (today's bound for lateness: 0.5 s)."""
    orders = [f"RA251126-2101-{n:02d}" for n in range(4)]
    rounds = 4  # ~4.5 s of window waits per order after the first round's calls
    for order in orders:
        control.add_order(order)
    old = start_worker("old", **PRODUCTION_VISIBILITY)
    # Up before the waits begin (see the test above): started after the first round, a slow
    # start on a loaded machine let every wait end before the deploy.
    start_worker("new", **PRODUCTION_VISIBILITY)
    ids = [
        enqueue_resend(order, new_etid=f"E{n:06d}")
        for n in range(1, rounds + 1)
        for order in orders
    ]
    wait_for(
        lambda: len(all_resend_calls(control)) >= len(orders),
        timeout=10,
        what="the first round",
    )

    deploy_started = time.time()
    # SIGTERM: warm shutdown. A loaded machine's may be slow; a SIGKILL after the default 20 s
    # would leave what the old worker held to its lease, which this test is not about.
    old.stop(timeout=60)
    assert "Restoring" in old.log() or old.process.returncode == 0
    wait_for(lambda: finished(ids), timeout=2 * rounds * WINDOW_SECONDS + 30, what="all sent")

    arrivals = [call["received_at"] for call in all_resend_calls(control)]
    after_deploy = [arrival for arrival in arrivals if arrival >= deploy_started]
    assert after_deploy, "every wait ended before the deploy: it tested nothing"
    for order in orders:
        calls = resend_calls(control, order)
        assert [c["status"] for c in calls] == [201] * rounds
        for previous, current in pairwise(calls):
            gap = current["received_at"] - previous["answered_at"]
            assert WINDOW_SECONDS <= gap <= WINDOW_SECONDS + LATENESS_ALLOWED, (order, gap)


def test_sigkill_requests_not_in_flight_run_again_within_30_seconds(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given a worker holding requests that wait for rate-limit slots and for windows (some
    opened in Tango's portal) and calls in flight, When it is SIGKILLed and a replacement
    starts under a new name, Then every request not in flight at the kill has its call
    within 30 s of the kill plus the wait it had left, the ones in flight wait out their held
    window (never a call inside it), and everything ends sent."""
    rate = 2.0
    orders = [f"RA251126-2201-{n:02d}" for n in range(6)]
    portal = [f"RA251126-2202-{n:02d}" for n in range(2)]
    for order in orders + portal:
        control.add_order(order)
        control.inject_fault(order, delay_seconds=0.4, delay_phase="after", count=3)
    for order in portal:
        control.portal_resend(order)  # met with the cooldown, then a wait for its window
    doomed = start_worker(
        "doomed", concurrency=4, TANGO_RATE_LIMIT=str(rate), **PRODUCTION_VISIBILITY
    )
    ids = [enqueue_resend(order) for order in portal]
    ids += [enqueue_resend(order, new_etid=f"E00000{n}") for n in (1, 2) for order in orders]
    wait_for(
        lambda: sum(c["status"] == 201 for c in all_resend_calls(control)) >= 3,
        timeout=15,
        what="the first resends",
    )
    doomed.kill()
    killed_at = time.time()
    start_worker("rescuer", concurrency=4, TANGO_RATE_LIMIT=str(rate), **PRODUCTION_VISIBILITY)

    wait_for(lambda: finished(ids), timeout=KILL_RECOVERY_ALLOWED + 30, what="all sent")
    records = finished(ids)
    assert records is not None and {r.status.value for r in records} == {"sent"}
    calls_after_kill = [c for c in all_resend_calls(control) if c["received_at"] > killed_at]
    # The replacement takes one rate-limit slot per call: the last of them legitimately waits
    # for every slot before its own.
    slots_after_kill = len(calls_after_kill) * RATE_HEADROOM / rate
    for order in orders + portal:
        calls = resend_calls(control, order)
        in_flight = [
            c for c in calls if c["received_at"] <= killed_at <= (c["answered_at"] or 1e18) + 0.5
        ]
        before = [c for c in calls if c["received_at"] <= killed_at and c["status"] == 201]
        after = [c for c in calls if c["received_at"] > killed_at]
        assert after or not calls or calls[-1]["status"] == 201, order
        if not after:
            continue
        assert after[0]["status"] == 201 or order in portal, "never a call inside our window"
        if in_flight:
            # Whether Tango acted is unknown, so the held window is waited out first.
            assert after[0]["received_at"] >= in_flight[-1]["received_at"] + WINDOW_SECONDS
            continue
        # Not in flight: due at the kill, or when its window ended, whichever is later.
        due = max(killed_at, before[-1]["answered_at"] + WINDOW_SECONDS if before else 0.0)
        lateness = after[0]["received_at"] - due
        assert lateness <= KILL_RECOVERY_ALLOWED + slots_after_kill, (order, lateness)
