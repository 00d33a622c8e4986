"""The scheduler's claim, without a worker: real Redis, the broker's publish stubbed.

What it must tell apart when a request's lease runs out: a call in flight (leave it to its
run until the hold ends), a task message still waiting in the broker queue (leave it), and a
message that was lost (release the request again). And a claim must never strand requests:
not when its reply is lost and replayed, not when a publish fails mid-batch.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.runtime import RuntimeFactory
from worker.queueing import scheduler
from worker.queueing.app import app as celery_app
from worker.queueing.scheduler import DueReleaser
from worker.runtime import Runtime
from worker.state.records import ResendRecord, TaskMessage

ORDER = "RA251125-9201-{:02d}"


class Broker:
    """Stands in for `app.send_task`: remembers what was published, can fail on demand."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []
        self.fail_after: int | None = None

    def send_task(self, name: str, *, args: list[str], kwargs: dict[str, Any], **_: Any) -> None:
        if self.fail_after is not None and len(self.published) >= self.fail_after:
            raise ConnectionError("broker unreachable")
        self.published.append((args[0], kwargs["dispatch"]))


@pytest.fixture
def runtime(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime(
        REDIS_KEY_PREFIX="scheduler-test",
        RESEND_QUEUE="scheduler-test-queue",
        RESEND_LEASE_SECONDS="1",
    )


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    stub = Broker()
    monkeypatch.setattr(celery_app, "send_task", stub.send_task)
    return stub


def create(runtime: Runtime, n: int, queued: bool = True) -> tuple[str, int]:
    """A new request as the producer stores it: with its task message pushed to the broker
    queue in the same step (`queued`), or without one; returns (id, dispatch number)."""
    now = runtime.clock.now()
    record = ResendRecord(
        id=f"req-{n}", reference_order_id=ORDER.format(n), created_at=now, updated_at=now
    )
    message = TaskMessage(runtime.settings.resend_queue, f"message-of-{n}") if queued else None
    creation = runtime.records.create(record, None, 60, lease_seconds=0.0, message=message)
    return record.id, creation.dispatch


def make_due(runtime: Runtime, request_id: str) -> None:
    runtime.redis.zadd(runtime.keys.due_index, {request_id: time.time() - 100})


def queue_messages(runtime: Runtime, count: int) -> None:
    """Messages waiting in the broker queue (the list kombu's Redis transport consumes)."""
    for n in range(count):
        runtime.redis.lpush(runtime.settings.resend_queue, f"message-{n}")


def test_a_lost_message_is_released_again_with_a_new_dispatch_number(
    runtime: Runtime, broker: Broker
) -> None:
    """Given a request whose message a worker popped and then died with (the broker queue is
    empty), When its lease is out, Then it is published again."""
    request_id, dispatch = create(runtime, 1)
    assert runtime.redis.rpop(runtime.settings.resend_queue) == "message-of-1"
    make_due(runtime, request_id)

    sent, _ = DueReleaser(runtime).release_due()

    assert sent == 1
    assert broker.published[0][0] == request_id and broker.published[0][1] > dispatch


def test_a_backlog_still_waiting_in_the_broker_queue_is_not_re_released(
    runtime: Runtime, broker: Broker
) -> None:
    """Given 50 requests whose messages wait in a queue no worker has reached yet, When their
    leases are out, Then none is re-released (no mass duplication of a large backlog)."""
    created = [create(runtime, n) for n in range(50)]
    assert runtime.redis.llen(runtime.settings.resend_queue) == 50
    for request_id, _ in created:
        make_due(runtime, request_id)

    assert DueReleaser(runtime).release_due()[0] == 0
    assert broker.published == []
    scores = [runtime.redis.zscore(runtime.keys.due_index, r) for r, _ in created]
    assert all(score is not None and score > time.time() for score in scores), "leases renewed"


def test_a_message_overtaken_by_a_later_one_is_presumed_lost(
    runtime: Runtime, broker: Broker
) -> None:
    """The broker queue is FIFO: once a worker took a message published after this one's,
    this one is no longer in the queue, so the request is released again."""
    (lost, lost_dispatch), (taken, taken_dispatch) = create(runtime, 1), create(runtime, 2)
    queue_messages(runtime, 3)  # other messages still queued behind
    runtime.records.begin(taken, 5.0, taken_dispatch)  # a worker took the later message
    make_due(runtime, lost)

    DueReleaser(runtime).release_due()

    assert [request_id for request_id, _ in broker.published] == [lost]
    assert lost_dispatch < taken_dispatch


def test_a_call_in_flight_is_left_to_its_run_until_its_hold_ends(
    runtime: Runtime, broker: Broker
) -> None:
    request_id, dispatch = create(runtime, 1)
    begun = runtime.records.begin(request_id, 0.0, dispatch)
    assert runtime.gate.try_start(ORDER.format(1), request_id, 20.0, begun.token).verdict == "go"
    make_due(runtime, request_id)

    DueReleaser(runtime).release_due()

    assert broker.published == []
    score = runtime.redis.zscore(runtime.keys.due_index, request_id)
    assert score is not None and time.time() + 19 < score < time.time() + 21


def test_a_replayed_claim_returns_the_same_requests(runtime: Runtime, broker: Broker) -> None:
    """redis-py replays a script whose reply was lost; the replay must hand back what the
    first run claimed, or those requests would wait out their lease unpublished."""
    request_id, _ = create(runtime, 1, queued=False)
    make_due(runtime, request_id)
    releaser = DueReleaser(runtime)
    fixed_claim_id = "replayed-claim"
    real_uuid4 = scheduler.uuid.uuid4

    class FixedId:
        hex = fixed_claim_id

    scheduler.uuid.uuid4 = lambda: FixedId  # type: ignore[assignment,return-value]
    try:
        first, _ = releaser.claim_resends()
        replay, _ = releaser.claim_resends()
    finally:
        scheduler.uuid.uuid4 = real_uuid4
    assert first == replay and [r for r, _ in first] == [request_id]


def test_a_publish_failing_mid_batch_hands_the_rest_back_at_once(
    runtime: Runtime, broker: Broker
) -> None:
    created = [create(runtime, n, queued=False)[0] for n in range(5)]
    for request_id in created:
        make_due(runtime, request_id)
    broker.fail_after = 2

    with pytest.raises(ConnectionError):
        DueReleaser(runtime).release_due()

    published = [request_id for request_id, _ in broker.published]
    rest = [request_id for request_id in created if request_id not in published]
    assert len(published) == 2 and len(rest) == 3
    for request_id in rest:
        score = runtime.redis.zscore(runtime.keys.due_index, request_id)
        assert score is not None and score <= time.time() + 0.5, "due again now, not a lease"
        assert runtime.redis.hget(runtime.keys.dispatched, request_id) is None
    broker.fail_after = None
    DueReleaser(runtime).release_due()
    assert sorted(request_id for request_id, _ in broker.published) == sorted(created)
