"""A request stored and read back: `create` and `get`, the record's hash and its TTL.
(worker.state.records against a real Redis.)"""

from __future__ import annotations

import redis

from tests.support.record_store import KEYS, ORDER, TTL, create, new_record
from worker.state import record_codec
from worker.state.records import Creation, RecordStore, ResendStatus


def test_a_created_record_reads_back_equal(store: RecordStore) -> None:
    record = new_record()

    assert create(store, record) == Creation(record.id, "created", True)

    assert store.get(record.id) == record


def test_an_unknown_id_reads_as_none(store: RecordStore) -> None:
    assert store.get("nope") is None


def test_a_record_is_a_hash_of_its_document_status_and_fingerprint(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()

    create(store, record)

    stored = redis_client.hgetall(KEYS.record(record.id))
    chunks = {f"d{i}" for i in range(1, int(stored["dn"]) + 1)}
    # `merges` comes with a merge; `cd` is the number of the task message created with it.
    assert stored.keys() == {"status", "fp", "dn", "cd"} | chunks
    doc = record_codec.stored_doc(stored)
    assert doc is not None and record_codec.decode(doc, record.id, "queued", 0) == record
    assert (stored["status"], stored["fp"]) == ("queued", record.fingerprint()[:16])


def test_get_takes_status_and_merges_from_the_hash_fields(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)

    redis_client.hset(KEYS.record(record.id), mapping={"status": "deferred", "merges": 3})

    stored = store.get(record.id)
    assert stored is not None
    assert (stored.status, stored.merges) == (ResendStatus.DEFERRED, 3)


def test_create_sets_the_record_ttl_on_every_key_of_the_request(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()

    create(store, record)

    for key in (KEYS.record(record.id), KEYS.order_fifo(ORDER)):
        assert TTL - 5 <= redis_client.ttl(key) <= TTL, key
    assert redis_client.ttl(KEYS.due_index) == -1  # live work only: no TTL


def test_create_without_a_key_writes_no_idempotency_key(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    create(store, new_record(), None)
    create(store, new_record(), "")

    assert redis_client.keys("test:idempotency:*") == []
