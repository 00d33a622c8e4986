"""A message taken and lost before its run began, while the broker queue is not empty: the
scheduler looks at it again about a second after its lease ran out, not a whole lease later.
(Real Redis; the broker's publish stubbed, as in test_scheduler_unit.py.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.runtime import RuntimeFactory
from worker.queueing.app import app as celery_app
from worker.queueing.scheduler import DueReleaser
from worker.runtime import Runtime
from worker.state.records import ResendRecord, TaskMessage

ORDER = "RA251125-9301-{:02d}"


@pytest.fixture
def runtime(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime(
        REDIS_KEY_PREFIX="recheck-test",
        RESEND_QUEUE="recheck-test-queue",
        RESEND_LEASE_SECONDS="15",
    )


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []

    def send_task(name: str, *, args: list[str], kwargs: dict[str, Any], **_: Any) -> None:
        sent.append(args[0])

    monkeypatch.setattr(celery_app, "send_task", send_task)
    return sent


def create(runtime: Runtime, n: int) -> tuple[str, int]:
    now = runtime.clock.now()
    record = ResendRecord(
        id=f"req-{n}", reference_order_id=ORDER.format(n), created_at=now, updated_at=now
    )
    message = TaskMessage(runtime.settings.resend_queue, f"message-of-{n}")
    creation = runtime.records.create(record, None, 60, lease_seconds=0.0, message=message)
    return record.id, creation.dispatch


def score(runtime: Runtime, request_id: str) -> float:
    found = runtime.redis.zscore(runtime.keys.due_index, request_id)
    assert found is not None
    return float(found)


def test_a_message_lost_while_others_wait_is_looked_at_again_after_a_second(
    runtime: Runtime, published: list[str]
) -> None:
    """Given a request whose message a worker took and died with before its run began, while
    a later request's message still waits in the queue, when its lease runs out, then it is
    looked at again about a second later (it was pushed back a whole lease, 15 s), and
    released as soon as the later message is taken."""
    lost, _ = create(runtime, 1)
    assert runtime.redis.rpop(runtime.settings.resend_queue) == "message-of-1"
    later, later_dispatch = create(runtime, 2)  # still queued
    runtime.redis.zadd(runtime.keys.due_index, {lost: time.time() - 1})
    releaser = DueReleaser(runtime)

    assert releaser.release_due()[0] == 0, "its message may still be queued: not yet"
    now = runtime.clock.now().timestamp()
    assert score(runtime, lost) <= now + 1.5, "looked at again in about a second"

    runtime.records.begin(later, 15.0, later_dispatch)  # a worker took the later message
    deadline = time.monotonic() + 5.0
    while lost not in published and time.monotonic() < deadline:
        releaser.release_due()
        time.sleep(0.05)
    assert lost in published
    assert score(runtime, lost) > runtime.clock.now().timestamp() + 10, "a new lease"


def test_a_deep_backlog_is_not_looked_at_every_second(
    runtime: Runtime, published: list[str]
) -> None:
    """Messages far behind the last one taken are almost surely still queued: they keep the
    whole lease, so a large backlog costs the scheduler nothing each second."""
    created = [create(runtime, n) for n in range(300)]
    for request_id, _ in created:
        runtime.redis.zadd(runtime.keys.due_index, {request_id: time.time() - 1})

    DueReleaser(runtime).release_due()

    now = runtime.clock.now().timestamp()
    soon = [r for r, _ in created if score(runtime, r) <= now + 1.5]
    assert published == []
    assert 0 < len(soon) <= 100
    assert all(score(runtime, r) > now + 10 for r, _ in created[100:])


# --- dispatch numbers ---------------------------------------------------------------------------


def consumed(runtime: Runtime) -> int:
    return int(runtime.redis.get(runtime.keys.dispatch_consumed) or 0)


def test_the_create_message_taken_after_a_re_release_counts_as_its_own_number(
    runtime: Runtime, published: list[str]
) -> None:
    """Given a request whose create message (it carries no number) was slow, not lost, and
    was re-released meanwhile under a newer number, when a worker takes the create message,
    then the highest number taken is the create message's own, not the re-release's: the
    messages numbered in between are not presumed lost because of it."""
    request_id, create_number = create(runtime, 1)
    held = runtime.redis.rpop(runtime.settings.resend_queue)  # a worker's slow prefetch
    assert held == "message-of-1"
    runtime.redis.zadd(runtime.keys.due_index, {request_id: time.time() - 1})
    assert DueReleaser(runtime).claim_resends()[0][0][0] == request_id  # re-released
    in_between, between_number = create(runtime, 2)  # published after the re-release
    assert between_number > create_number

    runtime.records.begin(request_id, 15.0, None)  # the held create message is taken

    assert consumed(runtime) == create_number
    runtime.redis.zadd(runtime.keys.due_index, {in_between: time.time() - 1})
    assert DueReleaser(runtime).release_due()[0] == 0, "still queued: not released again"
