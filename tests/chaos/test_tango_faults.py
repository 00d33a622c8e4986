"""Tango misbehaving: random 5xx, stalls past our read timeout, resets, HTML pages, a 201 with
a broken body, 429 storms. Every request must end in a terminal state with the right reason,
retries and backoff must stay within their bounds, and no call may land inside a window."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import pytest
import redis

from tests.support.calls import resend_calls, windows_respected
from tests.support.findings import chaos_seed, report
from tests.support.processes import WorkerFactory, free_port
from tests.support.records import wait_all_final
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.chaos

# How much later than its computed moment a retry may arrive (Celery ETA, a loaded machine).
LATENESS = 1.5
# Clock and rounding tolerance for "not earlier than".
EARLY = 0.01


def backoff_ceiling(failures: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** (failures - 1))


def test_random_5xx_end_terminal_with_bounded_retries_and_backoff(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    """Given each call failing with a 5xx at random (p = 0.2, JSON, HTML or broken bodies),
    every request is sent after exactly its failures, or fails after the retry budget, and
    each retry waits within the equal-jitter backoff bounds."""
    base, cap, max_retries = 0.2, 0.8, 3
    env = configure(
        RESEND_MAX_RETRIES=str(max_retries),
        RESEND_BACKOFF_BASE_SECONDS=str(base),
        RESEND_BACKOFF_MAX_SECONDS=str(cap),
    )
    seed = chaos_seed()
    rng = random.Random(seed)
    plan: dict[str, list[tuple[int, str]]] = {}
    for n in range(16):
        order = f"RA251201-7001-{n:02d}"
        faults: list[tuple[int, str]] = []
        while rng.random() < 0.2 and len(faults) <= max_retries:
            # 503 is not among them: it never reached Tango, so it waits with patience
            # instead of using up retries (tests/integration/test_bad_days_at_tango.py).
            faults.append((rng.choice([500, 502, 504]), rng.choice(["json", "html", "malformed"])))
        plan[order] = faults
    # One order always exhausts the budget, so "gave up" is exercised whatever the seed.
    plan["RA251201-7001-99"] = [(500, "html")] * (max_retries + 1)
    for order, faults in plan.items():
        control.add_order(order)
        for status, body in faults:
            control.inject_fault(order, status=status, body=body)
    control.add_order("RA251201-7002-01", send_email=False)  # permanent: 403.003
    start_worker(env)

    ids = {order: enqueue_resend(order) for order in plan}
    ids["RA251201-7002-01"] = enqueue_resend("RA251201-7002-01")
    ids["RA251201-7003-01"] = enqueue_resend("RA251201-7003-01")  # unknown: 404.017
    finished = wait_all_final(list(ids.values()), timeout=60)
    by_order = dict(zip(ids, finished, strict=True))

    total_calls = len(resend_calls(control))
    total_faults = sum(len(f) for o, f in plan.items() if o != "RA251201-7001-99")
    report("chaos", f"random 5xx: seed={seed} faults={total_faults} calls={total_calls}")
    for order, faults in plan.items():
        record, calls = by_order[order], resend_calls(control, order)
        statuses = [c["status"] for c in calls]
        failures = len(faults)
        assert not windows_respected(calls, 1.5), order
        if failures <= max_retries:
            assert record.status.value == "sent", (order, seed, record.reason)
            assert statuses == [s for s, _ in faults] + [201], (order, seed)
            assert (record.attempts, record.transient_failures) == (failures + 1, failures)
            assert [e.outcome for e in record.attempt_log] == ["retrying"] * failures + ["sent"]
        else:
            assert record.status.value == "failed", (order, seed)
            assert record.reason is not None
            assert record.reason.startswith(f"gave up after {failures} transient failures")
            assert statuses == [s for s, _ in faults]
            assert record.error is not None and record.error["status"] == faults[-1][0]
        for number, (previous, current) in enumerate(itertools.pairwise(calls), 1):
            gap = current["received_at"] - previous["answered_at"]
            ceiling = backoff_ceiling(number, base, cap)
            if previous["status"] in (502, 504):
                # Ambiguous: Tango may have acted, so a probe asks it promptly (issue 16).
                assert current["probe"], (order, number, seed)
                assert gap <= ceiling + LATENESS, (order, number, gap, seed)
                continue
            assert ceiling / 2 - EARLY <= gap <= ceiling + LATENESS, (order, number, gap, seed)

    refused = by_order["RA251201-7002-01"]
    assert refused.status.value == "failed"
    assert refused.reason is not None and refused.reason.startswith("Tango refused the resend")
    assert refused.error is not None and refused.error["i18n_key"] == "403.003"
    unknown = by_order["RA251201-7003-01"]
    assert unknown.status.value == "failed" and unknown.attempts == 1
    assert unknown.error is not None and unknown.error["i18n_key"] == "404.017"
    assert len(resend_calls(control, "RA251201-7003-01")) == 1


# order -> (fault, expected final status, expected reason prefix or None)
FAULTS: dict[str, dict[str, Any]] = {
    "RA251201-7101-01": {"delay_seconds": 2.5, "delay_phase": "after"},  # processed, then stall
    "RA251201-7101-02": {"reset": True},  # connection reset before processing
    # reset after processing (Tango's own work takes 0.3 s before it resends)
    "RA251201-7101-03": {"reset": True, "delay_phase": "after", "process_seconds": 0.3},
    "RA251201-7101-04": {"status": 502, "body": "html"},  # a load balancer's page
    "RA251201-7101-05": {"status": 504, "body": "html"},  # gateway timeout: Tango may have acted
    "RA251201-7101-06": {"status": 503, "body": "malformed"},
    "RA251201-7101-07": {"status": 201, "body": "malformed"},  # resent, answer cut off
    "RA251201-7101-08": {"status": 401},
    "RA251201-7101-09": {"status": 400, "body": "html"},
    "RA251201-7101-10": {"delay_seconds": 4.0, "delay_phase": "before"},  # stall, then act
}


def test_stalls_resets_html_and_broken_bodies_end_with_the_right_outcome(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    window, read_timeout = 1.5, 1.5
    env = configure(TANGO_TIMEOUT_SECONDS=str(read_timeout), TANGO_CONNECT_TIMEOUT_SECONDS="0.5")
    for order, fault in FAULTS.items():
        control.add_order(order)
        control.inject_fault(order, **fault)
    start_worker(env)

    ids = {order: enqueue_resend(order) for order in FAULTS}
    done = wait_all_final(list(ids.values()), timeout=40)
    record = dict(zip(ids, done, strict=True))
    calls = {order: resend_calls(control, order) for order in FAULTS}
    statuses = {order: [c["status"] for c in found] for order, found in calls.items()}

    def outcomes(order: str) -> list[str]:
        return [entry.outcome for entry in record[order].attempt_log]

    def gap(order: str) -> float:
        first, second = calls[order][:2]
        return float(second["received_at"] - first["received_at"])

    # Ambiguous (Tango may have acted): the window stays held and a probe asks Tango promptly
    # (issue 16). Its 201 makes it the resend; a cooldown answer proving that the first call
    # resent makes the request sent with no second resend.
    for order in ("RA251201-7101-01", "RA251201-7101-02", "RA251201-7101-04", "RA251201-7101-05"):
        assert record[order].status.value == "sent", (order, record[order].reason)
        assert outcomes(order) == ["retrying", "sent"], order
        assert record[order].attempt_log[1].probe, order
        assert record[order].transient_failures == 1
    assert statuses["RA251201-7101-02"] == [None, 201]
    assert statuses["RA251201-7101-04"] == [502, 201]
    assert statuses["RA251201-7101-05"] == [504, 201]

    # 7101-01: Tango's window (1.5 s) is over by our read timeout (1.5 s), so the probe's 201
    # is a second resend (at least once), one window after the first; its answer, too late.
    def stalled_answered() -> list[dict[str, Any]] | None:
        found = resend_calls(control, "RA251201-7101-01")
        return found if found[0]["answered_at"] is not None else None

    slow = wait_for(stalled_answered, timeout=10, what="the stalled answer")
    assert [c["status"] for c in slow] == [201, 201]
    assert slow[1]["received_at"] - slow[0]["received_at"] >= window - EARLY
    # 7101-03: reset after Tango resent: the probe's cooldown answer proves it, one resend.
    reset_after = record["RA251201-7101-03"]
    assert reset_after.status.value == "sent" and reset_after.confirmed_by == "cooldown"
    assert outcomes("RA251201-7101-03") == ["retrying", "confirmed"]
    assert statuses["RA251201-7101-03"] == [None, 403]
    # Unambiguous 5xx: plain backoff.
    for order, status in (("RA251201-7101-06", 503),):
        assert record[order].status.value == "sent"
        assert statuses[order] == [status, 201]
        assert outcomes(order) == ["retrying", "sent"]
        assert calls[order][1]["received_at"] - calls[order][0]["answered_at"] >= 0.1 - EARLY
    # A 201 whose body is cut off is still a resend: sent, once, without a response body.
    malformed = record["RA251201-7101-07"]
    assert malformed.status.value == "sent" and malformed.attempts == 1
    assert malformed.response is None
    assert statuses["RA251201-7101-07"] == [201]
    # Refused credentials (a key rotated on one side first) never reached Tango's resend:
    # the request waits, and goes once Tango accepts us again.
    unauthorized = record["RA251201-7101-08"]
    assert unauthorized.status.value == "sent" and statuses["RA251201-7101-08"] == [401, 201]
    assert outcomes("RA251201-7101-08") == ["retrying", "sent"]
    # Permanent refusals fail at once, naming Tango's answer.
    bad_request = record["RA251201-7101-09"]
    assert bad_request.status.value == "failed" and statuses["RA251201-7101-09"] == [400]
    assert bad_request.reason is not None
    assert bad_request.reason.startswith("Tango refused the resend: HTTP 400")
    assert "text/html" in bad_request.reason
    # Tango stalls past our timeout and acts afterwards: our retry may meet its window once
    # (a cooldown we could not foresee), and the request still ends sent.
    late = record["RA251201-7101-10"]
    assert late.status.value == "sent", late.reason
    assert outcomes("RA251201-7101-10")[0] == "retrying"
    assert statuses["RA251201-7101-10"].count(403) <= 1
    for order in FAULTS:
        if order != "RA251201-7101-10":
            assert not windows_respected(calls[order], window), order
    report("chaos", f"stall-then-act (7101-10) calls: {statuses['RA251201-7101-10']}")


def test_tango_unreachable_waits_without_holding_the_window_then_fails_out_of_patience(
    configure: Configure, start_worker: WorkerFactory, test_db: redis.Redis
) -> None:
    """Connection refused: Tango never saw the call, so backoff (not the window) paces the
    tries, no retry is used up, and the request fails only when its patience runs out,
    naming the URL (without credentials) and the cause."""
    port = free_port()
    env = configure(
        TANGO_BASE_URL=f"http://user:secret-in-url@127.0.0.1:{port}/raas/v2",
        RESEND_MAX_RETRIES="2",
        RESEND_COOLDOWN_SECONDS="5",
        TANGO_OUTAGE_RETRY_MAX_SECONDS="0.5",
        TANGO_OUTAGE_PATIENCE_SECONDS="3",
    )
    start_worker(env)
    started = time.monotonic()
    request_id = enqueue_resend("RA251201-7201-01")
    (record,) = wait_all_final([request_id], timeout=30)
    elapsed = time.monotonic() - started

    assert record.status.value == "failed"
    assert record.reason is not None
    assert record.reason.startswith(f"Tango could not be reached at http://127.0.0.1:{port}/")
    assert "secret-in-url" not in record.reason
    assert "TANGO_OUTAGE_PATIENCE_SECONDS" in record.reason
    assert "Connection refused" in record.reason
    assert record.transient_failures == 0
    assert len(record.attempt_log) > 3, "more tries than the retry budget: patience paces it"
    assert 3 <= elapsed < 8, "a refused connection is not ambiguous: no window wait"


def test_429_storm_honours_retry_after_and_never_trips_tangos_rate_limit(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    retry_after, max_retries = 0.6, 5
    env = configure(TANGO_RATE_LIMIT="8", RESEND_MAX_RETRIES=str(max_retries))
    control.configure(rate_limit=10)
    orders = [f"RA251201-7301-{n:02d}" for n in range(6)]
    for order in orders:
        control.add_order(order)
    control.inject_fault("*", status=429, retry_after=retry_after, count=14)
    start_worker(env)

    ids = [enqueue_resend(order) for order in orders]
    done = wait_all_final(ids, timeout=60)

    storm = 0
    for order, record in zip(orders, done, strict=True):
        calls = resend_calls(control, order)
        statuses = [c["status"] for c in calls]
        storm += statuses.count(429)
        # A 429 never reached Tango's resend: it uses up no retry, so every request is sent.
        assert record.status.value == "sent", record.reason
        assert statuses == [429] * (len(statuses) - 1) + [201]
        assert record.transient_failures == 0
        for previous, current in itertools.pairwise(calls):
            waited = current["received_at"] - previous["answered_at"]
            assert waited >= retry_after - EARLY, (order, waited)
            assert waited <= 20.0, (order, waited)  # pauses add up in a storm; never stuck
    assert storm == 14
    assert control.stats()["rate_limited"] == 0, "our limiter kept under Tango's"
    report("chaos", f"429 storm: {[r.status.value for r in done]}")


def test_a_429_holds_back_requests_that_already_reserved_a_slot(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    """docs/how-it-works.md: "A 429 from Tango pauses the whole fleet for its Retry-After",
    including requests that were given a rate-limit slot before the 429 arrived."""
    retry_after = 2.0
    env = configure(TANGO_RATE_LIMIT="4")  # slots about 0.26 s apart
    orders = [f"RA251201-7401-{n:02d}" for n in range(8)]
    for order in orders:
        control.add_order(order)
    # The first call stalls 0.5 s, then answers 429: by then the others hold slots reaching
    # 1.8 s ahead, most of them after the 429 and inside its Retry-After.
    control.inject_fault("*", status=429, retry_after=retry_after, delay_seconds=0.5)
    ids = [enqueue_resend(order) for order in orders]  # queued before any worker runs
    start_worker(env, concurrency=8)
    started = time.monotonic()
    wait_all_final(ids, timeout=60)
    took = time.monotonic() - started

    calls = resend_calls(control)
    (limited,) = [c for c in calls if c["status"] == 429]
    # Offsets from the 429's answer; the pause is written right after it, so calls that
    # passed the gate before then may still arrive in the first 0.15 s.
    offsets = [c["received_at"] - limited["answered_at"] for c in calls]
    inside = [round(t, 3) for t in offsets if 0.15 < t < retry_after - 0.05]
    report(
        "chaos", f"429 pause: calls at {[round(t, 2) for t in offsets]}s, all final in {took:.1f}s"
    )
    assert inside == [], f"calls {inside}s after the 429, inside its {retry_after}s Retry-After"
