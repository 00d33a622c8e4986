"""Durable before acting (REDIS_WAIT_REPLICAS=1): a 202 or a returned id, a call to Tango and
a reported final status each wait until the replica holds the write they depend on.

Each test runs a primary and a `--replicaof` replica of its own (tests/support/
replicated_redis.py); freezing the replica (SIGSTOP) is what a replica that fell behind
looks like to the primary: WAIT answers 0. The shared Redis is never touched.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.chaos.test_sentinel_failover import CALLBACK_SECRET, CallbackSink
from tests.support.calls import resend_calls
from tests.support.processes import WebFactory, WorkerFactory
from tests.support.receiver import post_webhook
from tests.support.records import wait_all_final
from tests.support.replicated_redis import ReplicatedRedis
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import EnqueueError, RedisUnavailable, enqueue_resend, get_resend
from worker.resend.producer import submit_many
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl
from worker.state.durability import NotReplicated
from worker.state.keys import RedisKeys

pytestmark = pytest.mark.chaos

SECRET = "whsec_" + base64.b64encode(b"durable-webhook-secret-0123456").decode()
# Short, so that a refused step costs the test little; the replica on loopback answers in
# well under a millisecond when it is not frozen.
WAIT_SETTINGS = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "300"}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    servers = ReplicatedRedis(tmp_path / "pair").start()
    yield servers
    servers.stop()


def _order_ids(order: str) -> list[str]:
    return current_runtime().records.ids_for_order(order)


def test_a_request_not_on_the_replica_is_refused_and_its_retry_finds_it(
    pair: ReplicatedRedis, configure: Configure, control: SandboxControl
) -> None:
    """Given WAIT=1, when the replica cannot acknowledge, `enqueue_resend` raises
    EnqueueError (nothing promised) though the primary may hold the request; the same
    submission again, once the replica is back, returns that request's id: one request."""
    configure(redis_url=pair.url(), **WAIT_SETTINGS)
    healthy = enqueue_resend("RA251206-2301-00", idempotency_key="k-healthy")
    assert healthy

    order = "RA251206-2301-01"
    with pair.replica_frozen():
        started = time.monotonic()
        with pytest.raises(EnqueueError, match="not confirmed"):
            enqueue_resend(order, new_etid="E000001", idempotency_key="k-1")
        assert time.monotonic() - started < 5
        (stored,) = _order_ids(order)  # stored on the primary, not promised

    again = enqueue_resend(order, new_etid="E000001", idempotency_key="k-1")
    assert again == stored and _order_ids(order) == [stored]


def test_a_bulk_enqueue_not_on_the_replica_is_refused_whole_and_found_again(
    pair: ReplicatedRedis, configure: Configure, control: SandboxControl
) -> None:
    configure(redis_url=pair.url(), **WAIT_SETTINGS)
    rows = [({"referenceOrderID": f"RA251206-2302-{n:02d}"}, f"bulk-{n}") for n in range(5)]
    with pair.replica_frozen():
        refused = submit_many(rows)
    assert all(isinstance(result, EnqueueError) for result in refused)
    stored = [_order_ids(f"RA251206-2302-{n:02d}") for n in range(5)]
    assert all(len(ids) == 1 for ids in stored)

    accepted = submit_many(rows)
    assert [s.request_id for s in accepted if not isinstance(s, Exception)] == [
        ids[0] for ids in stored
    ]
    assert all(getattr(s, "outcome", None) == "idempotent" for s in accepted)


def test_a_webhook_gets_503_until_replicated_and_its_retry_gets_the_same_request(
    pair: ReplicatedRedis, configure: Configure, control: SandboxControl, start_web: WebFactory
) -> None:
    env = configure(redis_url=pair.url(), WEBHOOK_SECRET=SECRET, **WAIT_SETTINGS)
    web = start_web(env)
    order = "RA251206-2303-01"
    payload = {"referenceOrderID": order, "newEtid": "E000003"}
    with pair.replica_frozen():
        refused = post_webhook(web.url, SECRET, payload, "msg_durable_1")
        assert refused.status_code == 503, refused.text
        (stored,) = _order_ids(order)

    accepted = post_webhook(web.url, SECRET, payload, "msg_durable_1")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["id"] == stored and accepted.json()["duplicate"] is True
    assert _order_ids(order) == [stored]
    assert "Traceback" not in web.log()


def test_no_call_to_tango_until_the_go_is_on_the_replica(
    pair: ReplicatedRedis,
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
) -> None:
    """The gate's "go" that the replica did not acknowledge is taken back: no call is made
    while the replica is frozen, and once it is back the request is sent by one plain call
    (not a probe: the go was withdrawn, so nothing is owed)."""
    order = "RA251206-2304-01"
    control.add_order(order)
    env = configure(redis_url=pair.url(), **WAIT_SETTINGS)
    request_id = enqueue_resend(order)
    keys = RedisKeys(env["REDIS_KEY_PREFIX"])
    with pair.replica_frozen():
        worker = start_worker(env, "w1", concurrency=2)
        wait_for(
            lambda: "call to Tango: on 0 of 1 replica" in worker.log(),
            timeout=30,
            what="the worker to refuse an unreplicated go",
        )
        assert resend_calls(control, order) == []
        with contextlib.closing(pair.primary.client()) as client:
            assert client.hget(keys.record(request_id), "calling_until") is None
            assert client.get(keys.order_window(order)) is None

    (record,) = wait_all_final([request_id], timeout=60)
    assert record.status.value == "sent"
    calls = resend_calls(control, order)
    assert [(c["status"], bool(c.get("probe"))) for c in calls] == [(201, False)]


@pytest.fixture
def sink() -> Iterator[CallbackSink]:
    receiver = CallbackSink()
    yield receiver
    receiver.close()


def test_a_final_status_not_on_the_replica_is_not_reported(
    pair: ReplicatedRedis,
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    sink: CallbackSink,
) -> None:
    """Tango answers 201 while the replica is frozen: the primary stores `sent`, but
    `get_resend` (the CLI's status, the API) will not say so, nor is the outcome callback
    delivered, until the replica has it; the run holding the answer keeps confirming it."""
    order = "RA251206-2305-01"
    control.add_order(order)
    control.inject_fault(order, delay_seconds=1.5, delay_phase="before")
    env = configure(
        redis_url=pair.url(),
        TANGO_TIMEOUT_SECONDS="6",
        RESULT_WEBHOOK_URL=sink.url,
        RESULT_WEBHOOK_SECRET=CALLBACK_SECRET,
        **WAIT_SETTINGS,
    )
    worker = start_worker(env, "w1", concurrency=2)
    request_id = enqueue_resend(order)
    wait_for(lambda: resend_calls(control, order), timeout=20, what="the call to Tango")
    keys = RedisKeys(env["REDIS_KEY_PREFIX"])
    with pair.replica_frozen():

        def stored_on_primary() -> bool:
            with contextlib.closing(pair.primary.client()) as client:
                return client.hget(keys.record(request_id), "status") == "sent"

        wait_for(stored_on_primary, timeout=20, what="sent, on the primary")
        with pytest.raises(RedisUnavailable, match="replica"):
            get_resend(request_id)
        wait_for(lambda: "holds Tango's answer" in worker.log(), timeout=10, what="the run to hold")
        # The callback thread claims the entry and finds its status unconfirmed: not sent.
        wait_for(
            lambda: f"request={request_id} callback : unconfirmed" in worker.log(),
            timeout=20,
            what="a callback held back",
        )
        assert request_id not in sink.statuses

    record = get_resend(request_id)
    assert record is not None and record.status.value == "sent"
    assert len(resend_calls(control, order)) == 1
    wait_for(
        lambda: sink.statuses.get(request_id) == "sent", timeout=60, what="the callback, after"
    )


def test_not_replicated_is_a_redis_error_every_caller_already_handles() -> None:
    assert issubclass(NotReplicated, redis.RedisError)
