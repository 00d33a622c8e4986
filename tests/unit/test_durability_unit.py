"""REDIS_WAIT_REPLICAS at the store and the gate, against the tests' shared Redis, which has no
replica: there `WAIT 1 t` answers 0 after t ms, the "not on the replicas" case. (The cases
where the replica does acknowledge run on a primary and replica of their own:
tests/chaos/test_durable_writes.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from tests.support.record_store import KEYS, MARGIN, ORDER, T0, TTL, create, new_record
from worker.core.settings import Settings
from worker.state.durability import NotReplicated, ReplicaWait
from worker.state.gate import CallGate, Verdict
from worker.state.records import RecordStore, ResendStatus

NO_REPLICA = ReplicaWait(replicas=1, timeout_ms=5)


@pytest.fixture
def waiting_store(redis_client: redis.Redis) -> RecordStore:
    return RecordStore(redis_client, KEYS, ttl_seconds=TTL, wait=NO_REPLICA)


def test_no_wait_unless_replicas_are_asked_for() -> None:
    assert ReplicaWait.from_settings(Settings(redis_wait_replicas=0)) is None
    wait = ReplicaWait.from_settings(Settings(redis_wait_replicas=2, redis_wait_timeout_ms=250))
    assert wait == ReplicaWait(2, 250) and wait.command == ("WAIT", 2, 250)


@pytest.mark.parametrize("timeout_ms", ["0", "5001"])
def test_a_wait_timeout_out_of_range_is_refused(
    timeout_ms: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_WAIT_TIMEOUT_MS", timeout_ms)
    with pytest.raises(ValueError, match="redis_wait_timeout_ms"):
        Settings()


def test_a_request_not_on_the_replicas_is_stored_unpromised_and_found_again(
    waiting_store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    with pytest.raises(NotReplicated, match="on 0 of 1 replica"):
        create(waiting_store, record, idempotency_key="k-1")
    assert redis_client.hget(KEYS.record(record.id), "status") == "queued"

    again = new_record(request=record.request)
    with pytest.raises(NotReplicated):
        create(waiting_store, again, idempotency_key="k-1")
    assert redis_client.exists(KEYS.record(again.id)) == 0, "the retry added nothing"


def test_a_batch_not_on_the_replicas_is_refused_request_by_request(
    waiting_store: RecordStore,
) -> None:
    batch = [(new_record(), f"k-{n}", 60, 5.0, None) for n in range(3)]
    results = waiting_store.create_many(batch)
    assert [type(result) for result in results] == [NotReplicated] * 3


def test_a_final_status_not_on_the_replicas_is_stored_but_not_reported_until_it_is(
    waiting_store: RecordStore, redis_client: redis.Redis
) -> None:
    plain = RecordStore(redis_client, KEYS, ttl_seconds=TTL)
    record = new_record()
    create(plain, record)
    begun = plain.begin(record.id, 5, None)
    sent = record.model_copy(
        update={"status": ResendStatus.SENT, "sent_at": T0 + timedelta(seconds=1)}
    )

    assert waiting_store.get_reported(record.id) is not None  # not final: nothing to confirm
    with pytest.raises(NotReplicated, match="final status"):
        waiting_store.finish(sent, MARGIN, token=begun.token)
    assert redis_client.hget(KEYS.record(record.id), "status") == "sent"
    with pytest.raises(NotReplicated, match="is sent"):
        waiting_store.get_reported(record.id)
    # The run asks again: the store answers "done" to it (and to nobody else), so its hook
    # runs once the status is confirmed.
    assert plain.finish(sent, MARGIN, token=begun.token) is True
    assert plain.finish(sent, MARGIN, token="another run") is False


def test_an_answer_in_hand_is_stored_even_after_a_newer_run_took_the_request(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    first = store.begin(record.id, 5, None)
    redis_client.hset(KEYS.record(record.id), "run", int(first.token) + 1)  # a newer run
    sent = record.model_copy(update={"status": ResendStatus.SENT})

    assert store.finish(sent, MARGIN, token=first.token) is False
    assert store.finish(sent, MARGIN, token=first.token, answer_in_hand=True) is True
    assert redis_client.hget(KEYS.record(record.id), "status") == "sent"
    # The request is this run's now: the newer run's writes are refused.
    assert redis_client.hget(KEYS.record(record.id), "run") == first.token


def test_a_go_not_on_the_replicas_is_taken_back(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    begun = store.begin(record.id, 5, None)
    gate = CallGate(redis_client, KEYS, rate_limit=0, wait=NO_REPLICA)

    with pytest.raises(NotReplicated, match="call to Tango"):
        gate.try_start(ORDER, record.id, 2.0, begun.token, call_seconds=1.0)

    key = KEYS.record(record.id)
    assert redis_client.hget(key, "calling_until") is None
    assert redis_client.hget(key, "call_started_at") is None
    assert redis_client.get(KEYS.order_window(ORDER)) is None
    # Nothing is owed: with the replica back, the same run passes the gate again.
    healthy = CallGate(redis_client, KEYS, rate_limit=0)
    assert healthy.try_start(ORDER, record.id, 2.0, begun.token).verdict is Verdict.GO


def test_a_probes_go_taken_back_keeps_the_earlier_call_and_the_held_window(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    begun = store.begin(record.id, 5, None)
    key = KEYS.record(record.id)
    # An earlier call of unknown outcome: its start, and the window it holds.
    redis_client.hset(key, "call_started_at", 1_000)
    redis_client.set(KEYS.order_window(ORDER), record.id, px=60_000)
    gate = CallGate(redis_client, KEYS, rate_limit=0, wait=NO_REPLICA)

    with pytest.raises(NotReplicated):
        gate.try_start(ORDER, record.id, 2.0, begun.token, call_seconds=1.0, probe=True)

    assert redis_client.hget(key, "call_started_at") == "1000"
    assert redis_client.get(KEYS.order_window(ORDER)) == record.id
    assert redis_client.hget(key, "calling_until") is None


def test_a_go_that_begins_the_run_is_taken_back_too(
    store: RecordStore, redis_client: redis.Redis
) -> None:
    record = new_record()
    create(store, record)
    gate = CallGate(redis_client, KEYS, rate_limit=0, wait=NO_REPLICA)
    with pytest.raises(NotReplicated):
        gate.begin_and_try_start(
            ORDER, record.id, 5, None, 2.0, call_seconds=1.0, due_tolerance_seconds=0.002
        )
    assert redis_client.hget(KEYS.record(record.id), "calling_until") is None
    assert redis_client.get(KEYS.order_window(ORDER)) is None


def test_a_client_without_per_thread_connections_waits_through_a_pipeline(
    redis_client: redis.Redis,
) -> None:
    """A single-connection client has no per-thread connections: the script and WAIT go in
    one pipeline instead, still on one connection."""
    kwargs = redis_client.connection_pool.connection_kwargs
    single = redis.Redis(
        host=kwargs["host"], port=kwargs["port"], db=kwargs["db"], decode_responses=True,
        single_connection_client=True,
    )  # fmt: skip
    try:
        store = RecordStore(single, KEYS, ttl_seconds=TTL, wait=NO_REPLICA)
        record = new_record()
        with pytest.raises(NotReplicated):
            create(store, record)
        assert redis_client.hget(KEYS.record(record.id), "status") == "queued"
    finally:
        single.close()


def test_a_held_answer_is_stored_again_while_redis_is_away_and_a_bug_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`keep_trying`: Redis unreachable, read-only (a replica before the failover is
    followed) or not confirming is waited out; an error Redis answered for a bug is raised."""
    from worker.resend.run import settle
    from worker.resend.run.begin import HeldRun

    pauses: list[float] = []
    monkeypatch.setattr(settle.time, "sleep", pauses.append)
    settler = settle.Settler(runtime=None, policy=None, rand=lambda: 0.0)  # type: ignore[arg-type]
    run = HeldRun(new_record(), "1")
    failures: list[Exception] = [
        redis.ConnectionError("refused"),
        redis.ReadOnlyError("You can't write against a read only replica."),
        NotReplicated("the final status", 0, NO_REPLICA),
        redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ]

    def store() -> str:
        if failures:
            raise failures.pop(0)
        return "stored"

    assert settler.keep_trying(run, store) == "stored"
    assert pauses == [0.1, 0.2, 0.5, 0.5]

    def buggy() -> str:
        raise redis.ResponseError("ERR user_script:1: Script attempted to access nonexistent key")

    with pytest.raises(redis.ResponseError, match="user_script"):
        settler.keep_trying(run, buggy)


def test_the_finished_hook_runs_only_once_the_final_status_is_confirmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run stores `sent`; the replicas do not confirm it at first: the `resend_finished`
    hook waits, and runs once, when the store (asked again) says it is confirmed."""
    from types import SimpleNamespace

    from worker.resend.callbacks import resend_finished
    from worker.resend.run import settle
    from worker.resend.run.begin import HeldRun

    monkeypatch.setattr(settle.time, "sleep", lambda _: None)
    told: list[str] = []
    answers: list[bool | NotReplicated] = [NotReplicated("final", 0, NO_REPLICA), True]

    def finish(*_: object, **__: object) -> bool:
        told.append(f"store:{len(told)}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def receiver(record: object, **_: object) -> None:
        told.append("hook")

    runtime = SimpleNamespace(records=SimpleNamespace(finish=finish))
    settler = settle.Settler(runtime=runtime, policy=None, rand=lambda: 0.0)  # type: ignore[arg-type]
    record = new_record().model_copy(update={"status": ResendStatus.SENT})
    resend_finished.connect(receiver)
    try:
        settler.finish(HeldRun(record, "1"), None, holding=True, answer_in_hand=True)
    finally:
        resend_finished.disconnect(receiver)
    assert told == ["store:0", "store:1", "hook"]


def test_a_callback_whose_status_is_unconfirmed_is_due_again_soon_with_no_attempt_counted(
    redis_client: redis.Redis,
) -> None:
    from worker.state import scripts

    claim = scripts.load("outbox_claim").bind(redis_client)
    settle = scripts.load("outbox_settle").bind(redis_client)
    outbox, claims, attempts = "t:callbacks:due", "t:callbacks:claims", "t:callbacks:attempts"
    redis_client.zadd(outbox, {"r-1": 0})
    _, token, _ = claim(keys={"outbox_key": outbox, "claims_key": claims},
                        args={"lease": 30, "batch": 1})  # fmt: skip

    def settled(claim_token: str) -> list[object]:
        return list(
            settle(
                keys={"outbox_key": outbox, "claims_key": claims, "attempts_key": attempts},
                args={
                    "id": "r-1",
                    "claim_token": claim_token,
                    "result": "unconfirmed",
                    "max_attempts": 3,
                    "backoff_base": 1,
                    "backoff_max": 60,
                },
            )
        )

    assert settled("not the claim")[0] == "stale"
    assert settled(str(token)) == ["unconfirmed", 0, "1"]
    due_in = float(redis_client.zscore(outbox, "r-1") or 0) - redis_client.time()[0]
    assert 0 < due_in <= 2
    assert redis_client.hget(attempts, "r-1") is None
