"""Many requests in one round trip (`submit_many`, what `enqueue --file` uses) against a real
Redis, no worker: the same outcomes and the same task messages as submitting each in turn,
messages built from one template that are byte for byte what `send_task` publishes, and
every request accounted for when Redis fails."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.broker import producer_broker
from tests.support.redis_db import TEST_REDIS_URL
from worker.core.settings import reset_settings_cache
from worker.queueing import task_messages
from worker.queueing.app import RESEND_TASK_NAME
from worker.queueing.app import app as celery_app
from worker.queueing.task_messages import MessageNotCaptured, build_task_message, build_template
from worker.resend.producer import EnqueueError, Submission, submit_many, submit_resend
from worker.resend.validation import InvalidResendRequest
from worker.runtime import current_runtime, reset_runtime
from worker.state.records import TaskMessage

ORDER, OTHER_ORDER = "RA251201-4101-01", "RA251201-4101-02"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def use_prefix(monkeypatch: pytest.MonkeyPatch, prefix: str) -> str:
    """This process's settings (and Celery producer) on the tests' database under `prefix`,
    which is also the queue's name."""
    for name, value in {
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "RESEND_QUEUE": prefix,
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    reset_runtime()
    return prefix


@pytest.fixture
def broker(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The tests' database, with Celery's producer pointed at it; yields the queue."""
    queue = use_prefix(monkeypatch, "many")
    with producer_broker():
        yield queue


def test_a_message_from_the_template_is_what_send_task_publishes(
    broker: str, redis_client: redis.Redis
) -> None:
    template = build_template(celery_app, RESEND_TASK_NAME, broker)
    for request_id in ("2b0e7c1e-6f5e-4c8e-9d55-0d6f1c1f6a01", "short-id-0"):
        celery_app.send_task(RESEND_TASK_NAME, args=[request_id], task_id=request_id, queue=broker)
        (published,) = redis_client.lrange(broker, 0, -1)
        redis_client.delete(broker)
        tag = json.loads(published)["properties"]["delivery_tag"]
        assert template.render(request_id, tag) == TaskMessage(broker, published)
        built = build_task_message(celery_app, RESEND_TASK_NAME, request_id, broker)
        built_tag = json.loads(built.payload)["properties"]["delivery_tag"]
        assert template.render(request_id, built_tag) == built
    # Without a tag given, each message gets one of its own, as kombu gives each.
    tags = {
        json.loads(template.render("same-id").payload)["properties"]["delivery_tag"]
        for _ in range(3)
    }
    assert len(tags) == 3 and all(_UUID.fullmatch(tag) for tag in tags)
    # Only ids that no encoding on the way changes (request ids are UUIDs).
    for odd in ("é-non-ascii", 'a"quote', "a'quote", "a\\b", ""):
        with pytest.raises(ValueError, match="not an id"):
            template.render(odd)


def test_a_template_that_differs_from_celerys_message_is_refused(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = iter(["first", "second"])
    original = build_task_message

    def changing(*args: Any) -> TaskMessage:
        message = original(*args)
        # The second message (the check) has a header the first did not have.
        return TaskMessage(message.list_key, message.payload.replace('"lang"', f'"{next(built)}"'))

    monkeypatch.setattr("worker.queueing.task_messages.build_task_message", changing)
    with pytest.raises(MessageNotCaptured, match="differs"):
        build_template(celery_app, RESEND_TASK_NAME, broker)


Item = tuple[dict[str, str], str | None]
ITEMS: list[Item] = [
    ({"referenceOrderID": ORDER, "newEmail": "pat@example.com"}, "k1"),  # 0 created, head
    ({"referenceOrderID": ORDER, "newEmail": "not-an-email"}, "k-bad"),  # 1 invalid
    ({"referenceOrderID": ORDER, "newEmail": "pat@example.com"}, None),  # 2 merged into 0
    ({"referenceOrderID": ORDER, "newEtid": "E000001"}, "k1"),  # 3 idempotent: 0
    ({"referenceOrderID": ORDER, "newEtid": "E000001"}, "x" * 256),  # 4 invalid key
    ({"referenceOrderID": ORDER, "newEtid": "E000001"}, "k2"),  # 5 created, behind 0
    ({"referenceOrderID": OTHER_ORDER}, None),  # 6 created, head
    ({"referenceOrderID": ORDER, "newEtid": "E000001"}, "k3"),  # 7 merged into 5
    ({"referenceOrderID": "RA-bad"}, None),  # 8 invalid
]


def described(results: list[Any]) -> list[Any]:
    """Each result with request ids named by the first item they were the result of."""
    first_of: dict[str, int] = {}
    out: list[Any] = []
    for index, result in enumerate(results):
        if isinstance(result, Submission):
            first_of.setdefault(result.request_id, index)
            out.append((result.outcome, first_of[result.request_id]))
        else:
            assert isinstance(result, InvalidResendRequest), result
            out.append(("invalid", result.errors))
    return out


def queued_messages(client: redis.Redis, queue: str, results: list[Any]) -> list[str]:
    """The queue's messages, oldest first, with ids and delivery tags made comparable."""
    names = {
        result.request_id: f"request-{index}"
        for index, result in reversed(list(enumerate(results)))
        if isinstance(result, Submission)
    }
    messages = []
    for payload in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(payload)
        request_id = message["headers"]["id"]
        tag = message["properties"]["delivery_tag"]
        body = base64.b64decode(message["body"]).decode()
        assert message["properties"]["correlation_id"] == request_id and request_id in body
        text = payload.replace(message["body"], body.replace(request_id, names[request_id]))
        messages.append(text.replace(request_id, names[request_id]).replace(tag, "TAG"))
    return messages


def test_submit_many_does_what_submitting_one_by_one_does(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad rows among good ones, a repeated key, identical requests and a request behind
    another of its order, all in one round trip: the outcomes, the stored requests and the
    task messages are those of `submit_resend` called for each in turn."""
    use_prefix(monkeypatch, "in-turn")
    with producer_broker():
        in_turn: list[Any] = []
        for fields, key in ITEMS:
            try:
                in_turn.append(submit_resend(fields, idempotency_key=key))
            except InvalidResendRequest as error:
                in_turn.append(error)
        in_turn_records = current_runtime().records.get_many(
            [r.request_id for r in in_turn if isinstance(r, Submission)]
        )
    use_prefix(monkeypatch, "together")
    with producer_broker():
        together = submit_many(ITEMS)
        together_records = current_runtime().records.get_many(
            [r.request_id for r in together if isinstance(r, Submission)]
        )

    assert (
        described(together)
        == described(in_turn)
        == [
            ("created", 0),
            ("invalid", {"newEmail": "is not a valid email address"}),
            ("merged", 0),
            ("idempotent", 0),
            ("invalid", {"idempotency_key": "must be text of 1 to 255 characters"}),
            ("created", 5),
            ("created", 6),
            ("merged", 5),
            ("invalid", {"referenceOrderID": described_order_error()}),
        ]
    )
    assert [(r.reference_order_id, r.request, r.status, r.merges) for r in together_records] == [
        (r.reference_order_id, r.request, r.status, r.merges) for r in in_turn_records
    ]
    # The heads' messages (requests 0 and 6; 5 waits behind 0), byte for byte but the ids.
    messages = queued_messages(redis_client, "together", together)
    assert len(messages) == 2
    assert messages == [
        message.replace('"in-turn"', '"together"')
        for message in queued_messages(redis_client, "in-turn", in_turn)
    ]


def described_order_error() -> str:
    return "must look like RA180426-1401-64 (RA, 6 digits, -, digits, -, digits)"


def test_without_a_template_each_message_is_built_as_before(
    broker: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any) -> Any:
        raise MessageNotCaptured("laid out anew")

    monkeypatch.setattr(task_messages, "build_template", refuse)
    results = submit_many([({"referenceOrderID": ORDER}, None), ({"referenceOrderID": "x"}, None)])
    assert isinstance(results[0], Submission) and results[0].created
    assert isinstance(results[1], InvalidResendRequest)
    (payload,) = redis_client.lrange(broker, 0, -1)
    assert json.loads(payload)["headers"]["id"] == results[0].request_id


def test_with_the_broker_unreachable_requests_are_stored_for_the_scheduler_to_publish(
    broker: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `submit_resend` does when its message cannot be built: stored without one, due
    at once. The template is tried once, not once per request (each try waits out kombu's
    publish retries)."""
    tries = []

    def unreachable(*_: Any) -> Any:
        tries.append(1)
        raise ConnectionError("Error 111 connecting to the broker")

    monkeypatch.setattr(task_messages, "build_template", unreachable)
    monkeypatch.setattr(task_messages, "build_task_message", unreachable)
    orders = [f"RA251201-4102-{n:02d}" for n in range(5)]
    results = submit_many([({"referenceOrderID": order}, None) for order in orders])
    assert all(isinstance(result, Submission) and result.created for result in results)
    assert tries == [1] and redis_client.llen(broker) == 0
    runtime = current_runtime()
    due = redis_client.zrange(runtime.keys.due_index, 0, -1, withscores=True)
    assert len(due) == 5 and all(score < float("inf") for _, score in due)


def test_a_round_trip_lost_as_a_whole_fails_every_valid_request_and_only_those(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(*_: Any) -> Any:
        raise redis.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(type(current_runtime().records), "create_many", lost)
    results = submit_many(
        [({"referenceOrderID": ORDER}, "a"), ({"referenceOrderID": "x"}, "b"), ({}, "c")]
    )
    assert isinstance(results[0], EnqueueError) and "Connection reset" in str(results[0])
    assert [type(result) for result in results[1:]] == [InvalidResendRequest] * 2
