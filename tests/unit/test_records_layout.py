"""How a waiting request is laid out in Redis (issue 13: a million waiting requests in under
1 GB), against a real Redis: the record hash stays a compact listpack, an order keeps its
queue and its history in one sorted set, a request's id names its order, and what earlier
versions stored (a whole JSON `doc`, the per-order pending hash and history set, the
id -> order index) is still read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from worker.state.keys import RedisKeys
from worker.state.record_model import order_in_request_id
from worker.state.records import (
    RecordStore,
    ResendRecord,
    ResendStatus,
    TaskMessage,
    new_request_id,
)

KEYS = RedisKeys("layout")
ORDER = "RA251129-2001-7"
TTL = 1000
T0 = datetime(2026, 11, 29, 20, 0, 0, tzinfo=UTC)
MESSAGE = TaskMessage("layout-queue", '{"body": "a task message"}')


@pytest.fixture
def store(redis_client: redis.Redis) -> RecordStore:
    return RecordStore(redis_client, KEYS, ttl_seconds=TTL)


def new_record(email: str, created_at: datetime = T0, order: str = ORDER) -> ResendRecord:
    return ResendRecord(
        id=new_request_id(order),
        reference_order_id=order,
        request={"newEmail": email},
        created_at=created_at,
        updated_at=created_at,
    )


def create(store: RecordStore, record: ResendRecord) -> str:
    return store.create(record, None, 300, lease_seconds=30, message=MESSAGE).request_id


def store_as_0_1_did(client: redis.Redis, record: ResendRecord, merges: int = 0) -> None:
    """The record as 0.1 stored a waiting request: its JSON whole in `doc`, `status` and
    `merges` beside it, and its place in the order's queue."""
    client.hset(
        KEYS.record(record.id),
        mapping={"doc": record.model_dump_json(), "status": "queued", "merges": merges},
    )
    client.zadd(KEYS.order_fifo(record.reference_order_id), {record.id: 1})


def order_entries(client: redis.Redis, order: str = ORDER) -> list[tuple[str, float]]:
    return [(str(m), s) for m, s in client.zrange(KEYS.order_fifo(order), 0, -1, withscores=True)]


def test_a_waiting_requests_record_is_a_listpack_of_small_fields(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record("a-rather-long-address.of-a-recipient@example.com")
    create(store, record)
    key = KEYS.record(record.id)

    fields = redis_client.hgetall(key)
    assert redis_client.object("encoding", key) == "listpack"
    assert set(fields) == {"status", "fp", "dn"} | {
        f"d{i}" for i in range(1, int(fields["dn"]) + 1)
    }
    assert all(len(value.encode()) <= 64 for value in fields.values())
    assert store.get(record.id) == record


def test_a_document_that_shrinks_leaves_no_stale_chunks(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record("jane@example.com")
    create(store, record)
    record.status, record.reason = ResendStatus.DEFERRED, "x" * 500
    assert store.save(record, due_at=None)
    long_chunks = int(redis_client.hget(KEYS.record(record.id), "dn") or 0)
    record.reason = "short"
    assert store.save(record, due_at=None)

    fields = redis_client.hgetall(KEYS.record(record.id))
    assert int(fields["dn"]) < long_chunks
    assert not [
        name
        for name in fields
        if name.startswith("d") and name[1:].isdigit() and int(name[1:]) > int(fields["dn"])
    ]
    assert store.get(record.id) == record


def test_a_record_an_earlier_version_stored_whole_is_read_and_rewritten_in_chunks(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record("jane@example.com")
    key = KEYS.record(record.id)
    store_as_0_1_did(redis_client, record, merges=2)

    begun = store.begin(record.id, 30, None)
    assert begun.record == record.model_copy(update={"merges": 2})
    record.status = ResendStatus.DEFERRED
    assert store.save(record, due_at=None, token=begun.token)

    fields = redis_client.hgetall(key)
    assert "doc" not in fields and int(fields["dn"]) >= 1
    assert store.get(record.id) == record.model_copy(update={"merges": 2})


def test_an_order_keeps_its_queue_and_its_history_in_one_sorted_set(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    first, second = new_record("a@example.com"), new_record("b@example.com", T0 + timedelta(1))
    create(store, first)
    create(store, second)
    assert store.first_waiting(ORDER) == first.id

    first.status, first.sent_at = ResendStatus.SENT, T0
    assert store.finish(first, 0.0)

    assert order_entries(redis_client) == [
        (first.id, -first.created_at.timestamp()),
        (second.id, pytest.approx(order_entries(redis_client)[1][1])),
    ]
    assert order_entries(redis_client)[1][1] > 0
    assert store.first_waiting(ORDER) == second.id
    assert store.ids_for_order(ORDER) == [first.id, second.id]
    assert not redis_client.exists(KEYS.order_requests(ORDER), KEYS.order_pending(ORDER))


def test_finished_requests_older_than_the_ttl_leave_the_history_when_the_order_gets_a_new_one(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    old = new_record("old@example.com")
    create(store, old)
    old.status = ResendStatus.CANCELLED
    assert store.finish(old, 0.0)
    newer = new_record("new@example.com", T0 + timedelta(seconds=TTL + 1))
    create(store, newer)

    assert store.ids_for_order(ORDER) == [newer.id]


def test_history_an_earlier_version_kept_apart_is_still_listed(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    redis_client.zadd(KEYS.order_requests(ORDER), {"a-legacy-uuid": T0.timestamp() - 60})
    record = new_record("jane@example.com")
    create(store, record)

    assert store.ids_for_order(ORDER) == ["a-legacy-uuid", record.id]


def test_an_identical_waiting_request_is_found_by_the_fingerprint_on_its_record(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    ahead, first = new_record("other@example.com"), new_record("jane@example.com")
    create(store, ahead)
    create(store, first)
    again = new_record("jane@example.com")

    creation = store.create(again, None, 300, lease_seconds=30, message=MESSAGE)

    assert (creation.request_id, creation.outcome) == (first.id, "merged")
    assert redis_client.hget(KEYS.record(first.id), "merges") == "1"
    assert not redis_client.exists(KEYS.record(again.id))


def test_a_request_an_earlier_version_stored_merges_through_its_pending_hash(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    legacy = new_record("jane@example.com")
    store_as_0_1_did(redis_client, legacy)
    redis_client.hset(KEYS.order_pending(ORDER), legacy.fingerprint(), legacy.id)

    creation = store.create(new_record("jane@example.com"), None, 300, 30, MESSAGE)

    assert (creation.request_id, creation.outcome) == (legacy.id, "merged")


def test_a_request_id_names_its_order_and_ids_of_other_shapes_name_none() -> None:
    request_id = new_request_id(ORDER)

    assert order_in_request_id(request_id) == ORDER
    assert len(request_id.split(".")[0]) == 12
    assert order_in_request_id("9b2d6c2e-0f55-4f7e-9d1f-4b8d1e0d3c11") is None
    assert order_in_request_id("req-1") is None


def test_an_orphan_is_repaired_from_its_id_alone(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    head, behind = new_record("a@example.com"), new_record("b@example.com")
    create(store, head)
    create(store, behind)
    redis_client.delete(KEYS.record(head.id))  # gone while unfinished (deleted by hand, say)

    assert store.drop_orphan(head.id, 0.0)

    assert store.first_waiting(ORDER) == behind.id
    assert redis_client.zscore(KEYS.due_index, behind.id) != float("inf")
    assert not redis_client.exists(KEYS.unfinished_orders)


def test_an_orphan_with_an_id_of_an_earlier_version_is_found_through_its_index(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    behind = new_record("b@example.com")
    redis_client.zadd(KEYS.order_fifo(ORDER), {"legacy-uuid": 0.5})
    redis_client.hset(KEYS.unfinished_orders, "legacy-uuid", ORDER)
    redis_client.zadd(KEYS.due_index, {"legacy-uuid": 1})
    create(store, behind)
    assert store.first_waiting(ORDER) == "legacy-uuid"

    assert store.drop_orphan("legacy-uuid", 0.0)

    assert store.first_waiting(ORDER) == behind.id
    assert redis_client.hget(KEYS.unfinished_orders, "legacy-uuid") is None


def test_the_stored_document_is_much_smaller_than_the_json_it_replaced(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record("jane@example.com")
    create(store, record)
    fields = redis_client.hgetall(KEYS.record(record.id))
    stored = "".join(fields[f"d{i}"] for i in range(1, int(fields["dn"]) + 1))

    assert json.loads(stored)[1] == ORDER
    assert len(stored) * 3 < len(record.model_dump_json())


def test_who_asked_is_held_in_small_hash_fields_beside_the_document(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    """The audit fields (record_codec.AUDIT_HASH_FIELDS) leave the document as the version
    before them wrote it, so its workers still read what new producers store, and the hash
    stays a listpack however long a file name the origin quotes."""
    from worker.resend import origins
    from worker.state import record_codec

    record = new_record("jane@example.com")
    record.origin = origins.bulk("a-" + "very-" * 30 + "long-file-name.csv", 123456)
    record.requested_by, record.forced = "api ops-bot", True
    create(store, record)
    key = KEYS.record(record.id)

    fields = redis_client.hgetall(key)
    assert redis_client.object("encoding", key) == "listpack"
    assert fields["o"].startswith("bulk a-very-") and fields["o"].endswith(".csv:123456")
    assert len(fields["o"].encode()) <= record_codec.AUDIT_VALUE_MAX_BYTES
    assert (fields["rb"], fields["f"]) == ("api ops-bot", "1")
    document = json.loads(record_codec.stored_doc(fields) or "")
    assert document[0] == 1 and len(document) <= len(record_codec._FIELDS) + 1
    stored = store.get(record.id)
    assert stored is not None and stored.origin == fields["o"] and stored.forced

    assert store.cancel(record.id, 0.01) == "cancelled"
    cancelled = store.get(record.id)
    assert cancelled is not None and cancelled.cancelled_at is not None
    assert redis_client.object("encoding", key) == "listpack"
