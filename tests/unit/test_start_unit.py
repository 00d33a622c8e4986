"""start.lua, on real Redis: a run begins and passes the gate in one round trip when nothing
needs a look first, and only then. Each case is held against the two steps it stands for
(begin.lua, then gate_start.lua): the same verdicts, the same state left in Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from worker.state.gate import CallGate, Verdict
from worker.state.keys import RedisKeys
from worker.state.records import (
    BeginVerdict,
    RecordStore,
    ResendRecord,
    ResendStatus,
    new_request_id,
)

KEYS = RedisKeys("start-test")
ORDER = "RA251129-4401-1"
HOLD, CALL, TOLERANCE = 2.0, 1.0, 0.002


@pytest.fixture
def store(redis_client: redis.Redis) -> RecordStore:
    return RecordStore(redis_client, KEYS, 60)


@pytest.fixture
def gate(redis_client: redis.Redis) -> CallGate:
    return CallGate(redis_client, KEYS, 0)


def new_request(store: RecordStore, order: str = ORDER) -> ResendRecord:
    now = store._clock.now()
    record = ResendRecord(
        id=new_request_id(order),
        reference_order_id=order,
        request={"newEmail": f"{order.lower()}@example.com"},
        created_at=now,
        updated_at=now,
    )
    store.create(record, None, 60, lease_seconds=5)
    return record


def start(gate: CallGate, record: ResendRecord) -> tuple[BeginVerdict, Verdict | None]:
    begun, verdict = gate.begin_and_try_start(
        record.reference_order_id,
        record.id,
        5,
        None,
        HOLD,
        call_seconds=CALL,
        due_tolerance_seconds=TOLERANCE,
    )
    return begun.verdict, None if verdict is None else verdict.verdict


def test_a_fresh_request_begins_at_the_gate_and_holds_the_window(
    gate: CallGate, store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_request(store)

    assert start(gate, record) == (BeginVerdict.OK, Verdict.GO)

    assert redis_client.get(KEYS.order_window(ORDER)) == record.id
    assert redis_client.hget(KEYS.record(record.id), "run") == "1"
    assert redis_client.hexists(KEYS.record(record.id), "calling_until")


def test_behind_another_request_it_waits_for_its_turn_in_the_same_step(
    gate: CallGate, store: RecordStore, redis_client: redis.Redis
) -> None:
    first = new_request(store)
    second = first.model_copy(
        update={"id": new_request_id(ORDER), "request": {"newEmail": "someone-else@example.com"}}
    )
    store.create(second, None, 60, lease_seconds=5)

    assert start(gate, second) == (BeginVerdict.OK, Verdict.TURN)
    assert redis_client.zscore(KEYS.due_index, second.id) == float("inf")


def test_a_run_woken_before_its_next_attempt_only_begins(
    gate: CallGate, store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_request(store)
    record.status = ResendStatus.RETRYING
    record.next_attempt_at = store._clock.now() + timedelta(seconds=30)
    assert store.save(record, due_at=None)

    assert start(gate, record) == (BeginVerdict.OK, None)
    assert not redis_client.exists(KEYS.order_window(ORDER))


def test_a_run_that_owes_a_probe_only_begins(
    gate: CallGate, store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_request(store)
    record.status = ResendStatus.RETRYING
    record.unresolved_call_started_at = store._clock.now().timestamp()
    assert store.save(record, due_at=None)

    assert start(gate, record) == (BeginVerdict.OK, None)

    record.unresolved_call_started_at = None  # settled: the marker goes with it
    assert store.save(record, due_at=None)
    assert not redis_client.hexists(KEYS.record(record.id), "pr")


def test_a_run_after_an_interrupted_call_only_begins(
    gate: CallGate, store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_request(store)
    key = KEYS.record(record.id)
    seconds, _ = redis_client.time()
    redis_client.hset(key, mapping={"calling_until": seconds - 1, "call_started_at": 1})

    assert start(gate, record) == (BeginVerdict.OK, None)


def test_a_record_an_earlier_version_stored_only_begins(
    gate: CallGate, store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_request(store)
    key = KEYS.record(record.id)
    redis_client.delete(key)
    redis_client.hset(key, mapping={"doc": record.model_dump_json(), "status": "queued"})

    assert start(gate, record) == (BeginVerdict.OK, None)


@pytest.mark.parametrize("status", [ResendStatus.SENT, ResendStatus.CANCELLED])
def test_a_finished_request_neither_begins_nor_passes(
    gate: CallGate, store: RecordStore, status: ResendStatus
) -> None:
    record = new_request(store)
    record.status = status
    assert store.finish(record, 0.0)

    assert start(gate, record) == (BeginVerdict.FINAL, None)


def test_one_step_leaves_what_the_two_steps_leave(
    gate: CallGate, store: RecordStore, redis_client: redis.Redis
) -> None:
    one, two = new_request(store, "RA251129-4401-2"), new_request(store, "RA251129-4401-3")

    assert start(gate, one) == (BeginVerdict.OK, Verdict.GO)
    begun = store.begin(two.id, 5, None)
    verdict = gate.try_start(two.reference_order_id, two.id, HOLD, begun.token, call_seconds=CALL)

    assert verdict.verdict is Verdict.GO
    fields_one = redis_client.hgetall(KEYS.record(one.id))
    fields_two = redis_client.hgetall(KEYS.record(two.id))
    assert set(fields_one) == set(fields_two)
    assert fields_one["run"] == fields_two["run"] == "1"
    ttl_one = redis_client.pttl(KEYS.order_window(one.reference_order_id))
    ttl_two = redis_client.pttl(KEYS.order_window(two.reference_order_id))
    assert abs(ttl_one - ttl_two) < 200
