"""The recent-resend guard in the create script, against a real Redis: a request for an order
sent to the same recipient within `recent_seconds` is answered with the sent request and
nothing is stored; another recipient, an older send, a request that did not go out or a
forced request (`recent_seconds` 0) is created as usual."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import redis

from tests.support.record_store import IDEMPOTENCY_TTL, KEYS, LEASE, MARGIN, MESSAGE, ORDER
from worker.state.clock import RedisClock
from worker.state.metrics import RECENT_COUNTER
from worker.state.record_model import recipient_key
from worker.state.records import (
    Creation,
    RecordStore,
    ResendRecord,
    ResendStatus,
    new_request_id,
)

SPAN = 600


def now(client: redis.Redis) -> datetime:
    return RedisClock(client).now()


def new_record(client: redis.Redis, request: dict[str, str] | None = None) -> ResendRecord:
    at = now(client)
    return ResendRecord(
        id=new_request_id(ORDER),
        reference_order_id=ORDER,
        request=dict(request or {}),
        created_at=at,
        updated_at=at,
    )


def ask(
    store: RecordStore,
    record: ResendRecord,
    recent_seconds: float = SPAN,
    key: str | None = None,
) -> Creation:
    return store.create(record, key, IDEMPOTENCY_TTL, LEASE, MESSAGE, recent_seconds)


def sent(
    store: RecordStore,
    client: redis.Redis,
    request: dict[str, str] | None = None,
    ago_seconds: float = 0,
    status: ResendStatus = ResendStatus.SENT,
) -> ResendRecord:
    """A request of the order created and finished (sent `ago_seconds` ago, by Redis's clock)."""
    record = new_record(client, request)
    record.created_at = record.updated_at = record.created_at - timedelta(seconds=ago_seconds + 1)
    assert ask(store, record, recent_seconds=0).outcome == "created"
    record.status = status
    if status is ResendStatus.SENT:
        record.sent_at = now(client) - timedelta(seconds=ago_seconds)
    assert store.finish(record, MARGIN)
    return record


def test_off_a_second_ask_for_the_same_recipient_is_created(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    sent(store, redis_client, {"newEmail": "pat@example.com"})
    again = new_record(redis_client, {"newEmail": "pat@example.com"})
    assert ask(store, again, recent_seconds=0).outcome == "created"


def test_on_an_ask_for_the_same_recipient_is_answered_with_the_sent_request(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first = sent(store, redis_client, {"newEmail": "pat@example.com"}, ago_seconds=120)
    again = new_record(redis_client, {"newEmail": "pat@example.com"})

    assert ask(store, again) == Creation(first.id, "recent", False)

    assert store.get(again.id) is None, "nothing stored"
    assert store.ids_for_order(ORDER) == [first.id]
    assert redis_client.llen(MESSAGE.list_key) == 1, "only the first request's message"
    assert float(redis_client.hget(KEYS.metrics, RECENT_COUNTER) or 0) == 1


def test_the_same_recipient_is_the_same_effective_contact_fields(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """Empty means the order's own; an email's case and the template change no recipient."""
    own = sent(store, redis_client, {})
    assert ask(store, new_record(redis_client, {"newEtid": "E000001"})).request_id == own.id
    assert ask(store, new_record(redis_client, {})).request_id == own.id
    by_mail = sent(store, redis_client, {"newEmail": "Pat@Example.com"})
    assert ask(store, new_record(redis_client, {"newEmail": "pat@example.COM"})).request_id == (
        by_mail.id
    )
    assert recipient_key({"newEmail": "A@B.c"}) == recipient_key({"newEmail": "a@b.C"})


def test_another_recipient_goes_as_usual(store: RecordStore, redis_client: redis.Redis) -> None:
    sent(store, redis_client, {"newEmail": "pat@example.com"})
    for other in (
        {"newEmail": "sam@example.com"},
        {"newMobile": "+14155550123"},
        {"newEmail": "pat@example.com", "newDeliveryMethod": "PHONE"},
        {},  # the order's own recipient is not pat@example.com as far as anyone here knows
    ):
        assert ask(store, new_record(redis_client, other)).outcome == "created", other


def test_a_send_older_than_the_span_does_not_count(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    sent(store, redis_client, {}, ago_seconds=SPAN + 5)
    assert ask(store, new_record(redis_client, {})).outcome == "created"


def test_only_a_request_that_was_sent_counts(store: RecordStore, redis_client: redis.Redis) -> None:
    sent(store, redis_client, {}, status=ResendStatus.FAILED)
    sent(store, redis_client, {}, status=ResendStatus.CANCELLED)
    assert ask(store, new_record(redis_client, {})).outcome == "created"


def test_the_latest_send_is_the_one_named(store: RecordStore, redis_client: redis.Redis) -> None:
    sent(store, redis_client, {}, ago_seconds=300)
    latest = sent(store, redis_client, {}, ago_seconds=30)
    assert ask(store, new_record(redis_client, {})).request_id == latest.id


def test_the_answer_is_kept_under_the_idempotency_key(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """A redelivery of that ask answers the same id, even after the span."""
    first = sent(store, redis_client, {})
    assert ask(store, new_record(redis_client, {}), key="webhook:msg_1").request_id == first.id
    later = ask(store, new_record(redis_client, {}), recent_seconds=0, key="webhook:msg_1")
    assert later == Creation(first.id, "idempotent", False)


def test_a_pending_identical_request_is_still_merged_when_nothing_was_sent(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first = new_record(redis_client, {})
    assert ask(store, first).outcome == "created"
    assert ask(store, new_record(redis_client, {})) == Creation(first.id, "merged", False)


def test_asks_at_the_same_moment_cannot_both_pass(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """Twenty asks racing after a send: every one is answered with it, none is created."""
    first = sent(store, redis_client, {"newEmail": "pat@example.com"})
    answers: list[Creation] = []
    start = threading.Barrier(20)

    def one() -> None:
        own = RecordStore(
            redis.Redis.from_url(_url(redis_client), decode_responses=True), KEYS, 1000
        )
        record = new_record(redis_client, {"newEmail": "pat@example.com"})
        start.wait()
        answers.append(ask(own, record))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [answer.outcome for answer in answers] == ["recent"] * 20
    assert {answer.request_id for answer in answers} == {first.id}
    assert store.ids_for_order(ORDER) == [first.id]


def test_a_send_stored_by_an_earlier_version_is_read_without_error(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """A record whose document is a JSON object (0.1) predates the guard: it is passed over."""
    old = new_record(redis_client, {})
    old.status, old.sent_at = ResendStatus.SENT, now(redis_client)
    redis_client.hset(KEYS.record(old.id), mapping={"doc": old.model_dump_json(), "status": "sent"})
    redis_client.zadd(KEYS.order_fifo(ORDER), {old.id: -old.created_at.timestamp()})
    assert ask(store, new_record(redis_client, {})).outcome == "created"


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def test_python_and_the_script_build_the_same_recipient(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """`recipient_key` folds ASCII case only, as Lua does: an address with other letters is
    the same recipient written the same way, and only then."""
    first = sent(store, redis_client, {"newEmail": "Zoë@Example.com", "newDeliveryMethod": "EMAIL"})
    same = new_record(redis_client, {"newEmail": "zoë@example.COM", "newDeliveryMethod": "EMAIL"})
    assert ask(store, same).request_id == first.id
    assert recipient_key({"newEmail": "ZOË@x.y"}) == "zoË@x.y\n\n"
