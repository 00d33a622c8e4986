"""The run's record carries the request's audit fields (who asked, forced, who cancelled),
which the record's hash keeps beside its document: the in-process `resend_finished` hook a
worker fires sees them as `get_resend` does. Real Redis, the executor, a scripted Tango."""

from __future__ import annotations

import pytest

from tests.support.lost_reply import reply_lost_once
from tests.support.scripted_tango import CREATED, ORDER, ScriptedTango, executor_with
from worker.resend.callbacks import event_body, resend_finished
from worker.resend.executor import Done
from worker.runtime import Runtime
from worker.state.records import ResendRecord, ResendStatus, new_request_id


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param(lambda: new_request_id(ORDER), id="id-names-its-order(start.lua)"),
        pytest.param(lambda: "req-1", id="id-without-its-order(begin.lua)"),
    ],
)
def test_the_hook_a_worker_fires_sees_who_asked(runtime: Runtime, request_id) -> None:  # type: ignore[no-untyped-def]
    """Given a request stored with its origin, who asked for it and `forced`, when a worker's
    run sends it, then the record the `resend_finished` hook receives (and the callback
    event built from it) carries them, as the stored record does."""
    heard = run_and_hear(runtime, request_id())
    assert len(heard) == 1
    finished = heard[0]
    assert (finished.origin, finished.requested_by, finished.forced) == (
        "python billing-job",
        "operator-7",
        True,
    )
    data = event_body(finished)["data"]
    assert (data["origin"], data["requested_by"], data["forced"]) == (
        "python billing-job",
        "operator-7",
        True,
    )
    stored = runtime.records.get(finished.id)
    assert stored is not None and stored.origin == "python billing-job"


def test_a_replayed_start_still_carries_who_asked(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the reply of the script that begins the run lost on the wire, when redis-py runs
    it again, then the replay's answer (its memo keeps neither the document nor the audit
    fields) still gives the run who asked: the hook hears it."""
    with reply_lost_once(monkeypatch, "start") as lost:
        heard = run_and_hear(runtime, new_request_id(ORDER))
    assert lost, "the reply was lost and the script replayed"
    assert [(record.origin, record.requested_by, record.forced) for record in heard] == [
        ("python billing-job", "operator-7", True)
    ]


def run_and_hear(runtime: Runtime, request_id: str) -> list[ResendRecord]:
    """Store a request with its audit fields, run it to `sent`, and return what the
    `resend_finished` hook heard."""
    now = runtime.clock.now()
    record = ResendRecord(
        id=request_id,
        reference_order_id=ORDER,
        request={"newEtid": "E000001"},
        created_at=now,
        updated_at=now,
        origin="python billing-job",
        requested_by="operator-7",
        forced=True,
    )
    runtime.records.create(record, None, 60, lease_seconds=5)
    heard: list[ResendRecord] = []

    def receiver(sender: object, record: ResendRecord, **_: object) -> None:
        heard.append(record)

    resend_finished.connect(receiver)
    try:
        assert executor_with(runtime, ScriptedTango(CREATED)).run(record.id) == Done(
            ResendStatus.SENT
        )
    finally:
        resend_finished.disconnect(receiver)
    return heard
