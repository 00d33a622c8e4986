"""The Lua scripts as files (worker/state/lua) and their loader (worker/state/scripts.py).

Each script names its KEYS and ARGV at its top and uses only those names; its Python caller
passes the same names. The last test runs every caller against a real Redis and checks that
each script is reached with exactly the names it declares: an argument added on one side only
fails here, not in production.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
import responses

from tests.support.redis_db import TEST_REDIS_URL
from worker.core.settings import load_settings
from worker.queueing.app import app as celery_app
from worker.queueing.scheduler import DueReleaser
from worker.resend.callbacks import OutcomeDeliverer
from worker.runtime import AsyncCreate, Runtime
from worker.state import scripts
from worker.state.call_marker import CallAnswer
from worker.state.durability import NotReplicated
from worker.state.records import ResendRecord, ResendStatus, new_request_id
from worker.state.scripts import BoundScript, ScriptCallError
from worker.tango.auth import SharedTokenAuthorizer

ORDER = "RA251129-1201-01"
TOKEN_URL = "http://127.0.0.1:9/oauth/token"
_ARGUMENT_USE = re.compile(r"\b(KEYS|ARGV)\[")


def script_text(name: str) -> str:
    return (scripts._lua_dir() / f"{name}.lua").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", scripts.script_names())
def test_a_script_names_each_argument_once_and_uses_only_the_names(name: str) -> None:
    script = scripts.load(name)
    assert script.key_names or script.arg_names
    assert len(set(script.key_names + script.arg_names)) == len(script.key_names + script.arg_names)
    # KEYS[...] / ARGV[...] appear only in the declarations at the top: no magic offsets below.
    uses = [line for line in script_text(name).splitlines() if _ARGUMENT_USE.search(line)]
    assert len(uses) == len(script.key_names) + len(script.arg_names)
    assert all(line.startswith("local ") for line in uses)


@pytest.mark.parametrize("helper", scripts.helper_names())
def test_a_helper_takes_what_it_uses_as_parameters(helper: str) -> None:
    assert not _ARGUMENT_USE.search(scripts.helper_source(helper))


def test_the_loader_includes_each_helper_once_where_asked() -> None:
    finish = scripts.load("finish")
    assert "--! include" not in finish.source
    assert finish.source.count("local function now_seconds()") == 1
    assert finish.source.count("local function promote_next(") == 1
    # order_queue is asked for by finish.lua and by promote_next.lua: included once.
    assert finish.source.count("local function first_waiting(") == 1


def test_lua_and_python_agree_on_the_final_statuses(redis_client: redis.Redis) -> None:
    probe = redis_client.register_script(
        scripts.helper_source("is_final") + "return is_final(ARGV[1]) and 1 or 0"
    )
    for status in ResendStatus:
        assert bool(probe(args=[status.value])) is status.is_final, status


def test_a_call_with_a_wrong_name_never_reaches_redis(redis_client: redis.Redis) -> None:
    sent: list[Any] = []
    script = scripts.load("release_unpublished")
    bound = BoundScript(script, lambda keys, args: sent.append((keys, args)))
    good_keys = {"due_key": "d", "dispatched_key": "x"}
    with pytest.raises(ScriptCallError, match="missing \\['dispatch'\\]"):
        bound(keys=good_keys, args={"id": "r1"})
    with pytest.raises(ScriptCallError, match="not declared \\['extra'\\]"):
        bound(keys={**good_keys, "extra": "e"}, args={"id": "r1", "dispatch": 1})
    assert sent == []
    bound(keys=good_keys, args={"id": "r1", "dispatch": 1})
    assert sent == [(["d", "x"], ["r1", 1])]


class CalledScripts:
    """Records each script a caller reached, with names the script accepted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: set[str] = set()
        original = BoundScript.__call__

        def recording(bound: BoundScript, keys: Any, args: Any) -> Any:
            reply = original(bound, keys, args)  # raises ScriptCallError on a mismatch
            self.names.add(bound.script.name)
            return reply

        monkeypatch.setattr(BoundScript, "__call__", recording)


@pytest.fixture
def runtime(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", "lua-names")
    monkeypatch.setenv("TANGO_RATE_LIMIT", "5")
    monkeypatch.setenv("RESULT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("RESULT_WEBHOOK_SECRET", "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3")
    built = Runtime(load_settings())
    yield built
    built.redis.close()


def new_record(runtime: Runtime, request_id: str, new_etid: str) -> ResendRecord:
    now = runtime.clock.now()
    return ResendRecord(
        id=request_id,
        reference_order_id=ORDER,
        request={"newEtid": new_etid},
        created_at=now,
        updated_at=now,
    )


def run_record_scripts(runtime: Runtime) -> None:
    records = runtime.records
    first, second = new_record(runtime, "lua-1", "E000001"), new_record(runtime, "lua-2", "E000002")
    assert records.create(first, "key-1", 60, 5).outcome == "created"
    records.create(second, None, 60, 5)
    # The same script in a pipeline (bulk files): the same names, checked the same way.
    third = new_record(runtime, "lua-3", "E000003")
    assert [c.outcome for c in records.create_many([(third, "key-1", 60, 5, None)])] == [
        "idempotent"
    ]
    records.release_unpublished(first.id, 1)
    begun = records.begin(first.id, 5, None)
    assert begun.verdict == "ok" and begun.token
    gate = runtime.gate
    went = gate.try_start(ORDER, first.id, 1.0, begun.token)
    assert went.verdict == "go" and went.started_at is not None
    runtime.call_marker.answered(
        ORDER, first.id, round(went.started_at * 1000), CallAnswer.ANSWERED
    )
    gate.reserve_slot("listing")
    gate.pause(0.01)
    first.status = ResendStatus.DEFERRED
    assert records.save(first, due_at=None, token=begun.token)
    first.status = ResendStatus.SENT
    assert records.finish(first, 0.1, token=begun.token)
    assert records.cancel(second.id, 0.1) == "cancelled"
    fourth = new_record(runtime, new_request_id(ORDER), "E000004")
    records.create(fourth, None, 60, 5)
    begun, _ = gate.begin_and_try_start(
        ORDER, fourth.id, 5, None, 1.0, call_seconds=0.5, due_tolerance_seconds=0.002
    )
    assert begun.verdict == "ok"
    runtime.redis.hset(runtime.keys.unfinished_orders, "gone", ORDER)
    assert records.drop_orphan("gone", 0.1)


def run_durable_scripts(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_WAIT_REPLICAS's paths: scripts followed by WAIT, and the go taken back (the test
    Redis has no replica, so nothing is confirmed)."""
    monkeypatch.setenv("REDIS_WAIT_REPLICAS", "1")
    monkeypatch.setenv("REDIS_WAIT_TIMEOUT_MS", "5")
    monkeypatch.setenv("TANGO_RATE_LIMIT", "0")  # a go, not a wait for a slot
    waiting = Runtime(load_settings())
    try:
        order = "RA251129-1201-02"  # an order of its own: its request's turn at once
        record = new_record(waiting, new_request_id(order), "E000005")
        record.reference_order_id = order
        with pytest.raises(NotReplicated):
            waiting.records.create(record, None, 60, 5)
        begun = waiting.records.begin(record.id, 5, None)
        with pytest.raises(NotReplicated):
            waiting.gate.try_start(record.reference_order_id, record.id, 1.0, begun.token)
        record.status = ResendStatus.SENT
        with pytest.raises(NotReplicated):
            waiting.records.finish(record, 0.1, token=begun.token)
    finally:
        waiting.redis.close()


def run_async_create(runtime: Runtime) -> None:
    record = new_record(runtime, "lua-async", "E000003")
    keys, args = runtime.records.create_arguments(record, None, 60, 5)

    async def create() -> Any:
        script = AsyncCreate(runtime.settings)
        try:
            return await script(keys, args)
        finally:
            await script.aclose()

    assert asyncio.run(create())[1] == "created"


def run_scheduler_and_outbox(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(celery_app, "send_task", lambda *args, **kwargs: None)
    DueReleaser(runtime).claim_resends()
    deliverer = OutcomeDeliverer(runtime)
    claimed, _ = deliverer.claim(5)
    assert claimed, "the finished request owes a callback"
    request_id, token = claimed[0]
    # Nothing listens on port 9 of loopback: the delivery fails and is settled as failed.
    assert deliverer.deliver(request_id, token) == "retrying"


def run_token_scripts(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANGO_CLIENT_ID", "client-1")
    monkeypatch.setenv("TANGO_CLIENT_SECRET", "cs-not-a-real-secret-0123456789")
    monkeypatch.setenv("TANGO_TOKEN_URL", TOKEN_URL)
    settings = load_settings()
    authorizer = SharedTokenAuthorizer(settings, runtime.redis, requests.Session(), runtime.keys)
    with responses.RequestsMock() as endpoint:
        endpoint.post(TOKEN_URL, json={"access_token": "t-1", "expires_in": 3600})
        header = authorizer.authorization()
    assert authorizer.rejected(header)


def test_every_script_is_called_with_exactly_the_names_it_declares(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    called = CalledScripts(monkeypatch)
    run_record_scripts(runtime)
    run_async_create(runtime)
    run_scheduler_and_outbox(runtime, monkeypatch)
    run_token_scripts(runtime, monkeypatch)
    run_durable_scripts(runtime, monkeypatch)
    assert called.names == set(scripts.script_names())
