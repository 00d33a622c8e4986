"""Races a review found, over a real worker and the sandbox: a publish that failed after
others were handed the request's id, and an order blocked behind a request whose record went."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.calls import resend_calls
from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.waiting import wait_for
from worker import cancel_resend, enqueue_resend, submit_resend
from worker.queueing.app import app
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration


def test_a_request_whose_message_could_not_be_built_is_still_sent_once(
    control: SandboxControl, start_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the broker refusing the task message of a new request, When an identical
    submission is merged into it and a redelivery with its idempotency key is handed its id,
    Then that one request is stored, released by the scheduler, and sent once, and every id
    handed out is the one sent (on the old code a failed publish deleted the request that
    the others had been given)."""
    order = "RA251126-2301-01"
    control.add_order(order)
    fields = {"referenceOrderID": order, "newEmail": "pat@example.com"}

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(app, "send_task", refuse)
    first = submit_resend(fields, idempotency_key="bounce-7")
    merged = submit_resend(fields)
    redelivered = submit_resend(fields, idempotency_key="bounce-7")
    monkeypatch.undo()
    assert first.outcome == "created"
    assert (merged.request_id, redelivered.request_id) == (first.request_id,) * 2
    runtime = current_runtime()
    assert runtime.redis.llen(runtime.settings.resend_queue) == 0, "nothing was queued"

    start_worker()
    records = wait_for(lambda: finished([first.request_id]), timeout=20, what="it to be sent")
    assert records[0].status.value == "sent" and records[0].merges == 1
    assert [c["status"] for c in resend_calls(control, order)] == [201]
    again = submit_resend(fields, idempotency_key="bounce-7")
    assert again.request_id == first.request_id, "the key still points at a live request"


def test_an_order_whose_head_record_vanished_moves_on(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given an order's first request whose record was deleted (or expired) while it stood at
    the head of the order's queue, When a worker runs its task, Then it is taken off the queue
    and the next request of the order is sent (on the old code the order was blocked for
    good and the orphan re-released every lease, forever)."""
    order = "RA251126-2401-01"
    control.add_order(order)
    head = enqueue_resend(order, new_etid="E000001")
    behind = enqueue_resend(order, new_etid="E000002")
    runtime = current_runtime()
    runtime.redis.delete(runtime.keys.record(head))

    start_worker()
    records = wait_for(lambda: finished([behind]), timeout=15, what="the next request")
    assert records[0].status.value == "sent"
    assert [c["body"] for c in resend_calls(control, order)] == [{"newEtid": "E000002"}]
    assert runtime.redis.zscore(runtime.keys.due_index, head) is None
    # Nothing waits in the order's queue; its history keeps the request that was sent.
    assert runtime.redis.zrangebyscore(runtime.keys.order_fifo(order), "(0", "+inf") == []
    assert runtime.records.ids_for_order(order) == [behind]


def test_a_second_task_message_during_a_call_changes_nothing(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given a call to Tango in flight, When a second task message of the same request runs
    on another worker (as a redelivery or a retried publish would) and a cancel arrives, Then
    the cancel is refused as in flight, there is one call, and the request ends sent with
    one attempt (on the old code the second run cleared `calling_until`, the cancel was
    accepted mid-call, and the record ended cancelled though Tango resent)."""
    order = "RA251126-2501-01"
    control.add_order(order)
    # Well inside the 2 s read timeout of the tests' settings: a slow answer, not a timeout.
    control.inject_fault(order, delay_seconds=1.2, delay_phase="after")
    start_worker("a")
    start_worker("b")
    request_id = enqueue_resend(order)
    wait_for(lambda: resend_calls(control, order), timeout=10, what="the call to start")

    app.send_task(
        "tango_resend.send_resend", args=[request_id], queue=current_runtime().settings.resend_queue
    )
    answers = []
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:  # cancels racing the second message, during the call
        answers.append(cancel_resend(request_id))
        time.sleep(0.05)

    records = wait_for(lambda: finished([request_id]), timeout=15, what="the outcome")
    assert set(answers) == {"in_flight"}
    assert records[0].status.value == "sent" and records[0].attempts == 1
    assert [c["status"] for c in resend_calls(control, order)] == [201]
