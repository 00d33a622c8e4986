"""End to end: producer API -> Redis -> real Celery worker -> sandbox over HTTP."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
import redis

from tests.support.calls import LATENESS_ALLOWED, resend_calls
from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.sandbox import WINDOW_SECONDS
from tests.support.waiting import wait_for
from worker import InvalidResendRequest, enqueue_resend
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

ORDER = "RA251125-2001-01"


def test_three_resends_of_one_order_are_one_window_apart(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given three requests for one order at once, each goes out one window after the last."""
    control.add_order(ORDER)
    start_worker(concurrency=8)

    ids = [enqueue_resend(ORDER, new_etid=f"E00000{n}") for n in range(3)]
    records = wait_for(lambda: finished(ids), timeout=6 * WINDOW_SECONDS + 10, what="3 sent")

    assert [r.status.value for r in records] == ["sent"] * 3
    calls = resend_calls(control, ORDER)
    assert [c["status"] for c in calls] == [201, 201, 201], "no cooldown error of our own making"
    for previous, current in pairwise(calls):
        gap = current["received_at"] - previous["answered_at"]
        assert gap >= WINDOW_SECONDS, f"resent {WINDOW_SECONDS - gap:.3f}s early"
        assert gap <= WINDOW_SECONDS + LATENESS_ALLOWED, f"resent {gap - WINDOW_SECONDS:.3f}s late"


def test_portal_resend_then_ours_meets_one_cooldown_and_succeeds_at_window_end(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given a resend made in Tango's portal, ours meets the cooldown once, then goes out."""
    control.add_order(ORDER)
    start_worker()
    control.portal_resend(ORDER)
    portal_at = max(c["received_at"] for c in control.calls()) if control.calls() else None

    request_id = enqueue_resend(ORDER)
    (record,) = wait_for(lambda: finished([request_id]), timeout=10, what="sent")

    assert record.status.value == "sent"
    calls = resend_calls(control, ORDER)
    assert [c["i18nKey"] for c in calls] == ["403.005", None]
    assert [c["status"] for c in calls] == [403, 201]
    assert record.cooldown_deferrals == 1 and record.attempts == 2
    window_end = calls[0]["received_at"] if portal_at is None else portal_at
    assert calls[1]["received_at"] <= window_end + WINDOW_SECONDS + LATENESS_ALLOWED + 1.0
    assert record.tango_request_ids == [c["requestId"] for c in calls]


def test_503_then_500_then_success(control: SandboxControl, start_worker: WorkerFactory) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=503)
    control.inject_fault(ORDER, status=500)
    start_worker()

    request_id = enqueue_resend(ORDER)
    (record,) = wait_for(lambda: finished([request_id]), timeout=15, what="sent")

    assert record.status.value == "sent"
    assert [c["status"] for c in resend_calls(control, ORDER)] == [503, 500, 201]
    # The 503 never reached Tango: it waited, using up no retry; the 500 used one.
    assert record.attempts == 3 and record.transient_failures == 1
    assert [e.outcome for e in record.attempt_log] == ["retrying", "retrying", "sent"]
    assert record.response is not None and "createdAt" in record.response


def test_transient_failures_exhaust_the_budget_then_fail(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=502, count=10, body="html")
    start_worker(RESEND_MAX_RETRIES="2")

    request_id = enqueue_resend(ORDER)
    (record,) = wait_for(lambda: finished([request_id]), timeout=15, what="failed")

    assert record.status.value == "failed"
    assert len(resend_calls(control, ORDER)) == 3
    assert record.error is not None and record.error["status"] == 502


def test_unknown_order_fails_after_one_call(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    start_worker()
    request_id = enqueue_resend("RA251125-9999-99")
    (record,) = wait_for(lambda: finished([request_id]), timeout=10, what="failed")

    assert record.status.value == "failed"
    assert record.error is not None and record.error["i18n_key"] == "404.017"
    assert len(resend_calls(control, "RA251125-9999-99")) == 1


def test_idempotency_key_returns_the_first_request(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    control.add_order(ORDER)
    start_worker()
    first = enqueue_resend(ORDER, idempotency_key="ticket-4411")
    second = enqueue_resend(ORDER, idempotency_key="ticket-4411")
    assert first == second
    wait_for(lambda: finished([first]), timeout=10, what="sent")
    assert len(resend_calls(control, ORDER)) == 1


def test_only_set_fields_reach_tango(control: SandboxControl, start_worker: WorkerFactory) -> None:
    control.add_order(ORDER)
    start_worker()
    request_id = enqueue_resend(ORDER, new_mobile="+14155550123", new_delivery_method="PHONE")
    wait_for(lambda: finished([request_id]), timeout=10, what="sent")
    (call,) = resend_calls(control, ORDER)
    assert call["body"] == {"newMobile": "+14155550123", "newDeliveryMethod": "PHONE"}


INVALID_REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("RA251125-2001-01/../../admin", {}),
    ("RA251125-2001-01?x=1", {}),
    ("RA251125-2001-01\r\nX-Injected: 1", {}),
    (ORDER, {"new_email": "not-an-email"}),
    (ORDER, {"new_mobile": "4155550123"}),
    (ORDER, {"new_etid": "X000000"}),
    (ORDER, {"new_delivery_method": "FAX"}),
]


def test_invalid_input_never_reaches_tango_nor_redis(
    control: SandboxControl, start_worker: WorkerFactory, redis_client: Any
) -> None:
    """Given bad requests, each is refused, nothing is stored, and the worker keeps serving."""
    control.add_order(ORDER)
    start_worker()
    keys_before = set(redis_client.keys("*"))
    for order, fields in INVALID_REQUESTS:
        with pytest.raises(InvalidResendRequest):
            enqueue_resend(order, **fields)
    assert set(redis_client.keys("*")) == keys_before
    good = enqueue_resend(ORDER)
    wait_for(lambda: finished([good]), timeout=10, what="the valid request")
    assert [c["status"] for c in control.calls() if c["path"].endswith("/resends")] == [201]


def test_timeout_after_tango_acted_keeps_the_window_and_retries_after_it(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given Tango resends but answers after our read timeout, the retry waits out the window.

    The outcome is ambiguous, so the request is retried (at least once beats never), but never
    inside the window the unseen resend may have opened. Here our read timeout (2 s) is longer
    than the window (1.5 s): the prompt probe (issue 16) already comes after Tango's window,
    and Tango answers it with 201.
    """
    control.add_order(ORDER)
    control.inject_fault(ORDER, delay_seconds=3.0, delay_phase="after")  # read timeout is 2 s
    start_worker()

    request_id = enqueue_resend(ORDER)
    (record,) = wait_for(lambda: finished([request_id]), timeout=20, what="sent")

    def answered() -> list[dict[str, object]] | None:
        calls = resend_calls(control, ORDER)
        return calls if all(c["answered_at"] is not None for c in calls) else None

    calls = wait_for(answered, timeout=10, what="the late answer")
    assert [(c["status"], c["probe"]) for c in calls] == [(201, False), (201, True)]
    assert calls[1]["received_at"] - calls[0]["received_at"] >= WINDOW_SECONDS
    assert record.status.value == "sent"
    assert (record.attempts, record.transient_failures) == (2, 1)
    assert record.attempt_log[0].outcome == "retrying"


def test_a_502_after_tango_acted_is_confirmed_by_a_probe_and_resent_once(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given Tango resends but a gateway answers 502 (Tango's answer lost behind it), the
    outcome is ambiguous like a 504: the window stays held, and a prompt probe asks Tango.
    Its cooldown answer (last sent after our call started) proves the resend: `sent`,
    confirmed by the cooldown, one resend (before issue 16: resent again a window later)."""
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=502, body="html", delay_phase="after", process_seconds=0.3)
    start_worker()

    request_id = enqueue_resend(ORDER)
    (record,) = wait_for(lambda: finished([request_id]), timeout=20, what="sent")

    calls = resend_calls(control, ORDER)
    assert [(c["status"], c["i18nKey"], c["probe"]) for c in calls] == [
        (502, None, False),
        (403, "403.005", True),
    ]
    assert record.status.value == "sent" and record.confirmed_by == "cooldown"
    assert (record.attempts, record.transient_failures) == (2, 1)
    assert [(a.outcome, a.probe) for a in record.attempt_log] == [
        ("retrying", False),
        ("confirmed", True),
    ]


def test_a_running_resend_leaves_nothing_in_the_brokers_unacked_hash(
    control: SandboxControl, start_worker: WorkerFactory, test_db: redis.Redis
) -> None:
    """A resend task's acknowledgement lives in the worker's memory (our lease covers the
    message): while its call is in flight kombu's `unacked` hash and index stay empty, and
    the request still finishes and is acknowledged (nothing is left in the queue)."""
    control.add_order(ORDER)
    control.inject_fault(ORDER, delay_seconds=1.0, delay_phase="after")
    start_worker()
    request_id = enqueue_resend(ORDER)
    wait_for(
        lambda: any(c["status"] is None for c in resend_calls(control, ORDER)),
        timeout=10,
        what="the call in flight",
    )
    assert test_db.hlen("unacked") == 0 and test_db.zcard("unacked_index") == 0
    (record,) = wait_for(lambda: finished([request_id]), timeout=10, what="sent")
    assert record.status.value == "sent"
    assert [c["status"] for c in resend_calls(control, ORDER)] == [201]
    assert test_db.hlen("unacked") == 0
