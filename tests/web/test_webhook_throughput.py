"""What makes the receiver keep up with storms, held as behaviour (the speed itself is measured
by `make bench`, never asserted here): one round trip to Redis per webhook, in which the
request is stored, its task queued and the submission counted together; an event loop that
is never handed to a thread for it; Nagle off on every connection of a multi-process server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.receiver import WEBHOOK_ORDER, Signer
from tests.support.redis_db import TEST_REDIS_URL
from worker import get_resend
from worker.web.server import tcp_listener

ROUTE = "/webhooks/resends"


class Monitor:
    """Redis MONITOR in a thread: the commands clients sent to the tests' database between
    entering and leaving. Leaving sends a marker command and waits until the reader has seen
    it, so every command sent before it is recorded (MONITOR reports in order)."""

    def __init__(self, db: int) -> None:
        self._client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        self._db = db
        self._marker = f"monitor-end-{uuid.uuid4().hex}"
        self.commands: list[list[str]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for event in monitor.listen():
                command = str(event.get("command", ""))
                if self._marker in command:
                    return
                # Commands a script ran carry "lua" as their client; skip them and other DBs.
                if event.get("db") == self._db and event.get("client_type") != "lua":
                    self.commands.append(command.split(" ", 1))

    def __enter__(self) -> Monitor:
        self._thread.start()
        assert self._ready.wait(5), "MONITOR did not start"
        return self

    def __exit__(self, *_: object) -> None:
        # From another database, so the marker's own connection set-up is not recorded.
        other_db = 0 if self._db != 0 else 1
        redis.Redis.from_url(TEST_REDIS_URL, db=other_db).echo(self._marker)
        self._thread.join(10)
        assert not self._thread.is_alive(), "MONITOR never saw its end marker"


@pytest.fixture
def db(redis_client: redis.Redis) -> int:
    return int(redis_client.connection_pool.connection_kwargs.get("db", 0))


def test_a_webhook_is_stored_queued_and_counted_in_one_round_trip(
    client: TestClient, signed: Signer, web_env: dict[str, str], db: int
) -> None:
    """Given a signed webhook, When the receiver answers 202, Then clients sent Redis one
    command for it (the create script), and that script stored the record, pushed its task
    message to the queue and counted it: a 202 means stored and queued, atomically."""
    # The first webhook opens the connections and declares the queue; the second is a storm's.
    warm_up = json.dumps({"referenceOrderID": WEBHOOK_ORDER, "newEtid": "E000001"}).encode()
    assert client.post(ROUTE, content=warm_up, headers=signed(warm_up)).status_code == 202
    body = json.dumps({"referenceOrderID": "RA251125-1101-02"}).encode()
    headers = signed(body)

    with Monitor(db) as monitor:
        response = client.post(ROUTE, content=body, headers=headers)

    assert response.status_code == 202
    sent = [command[0].upper() for command in monitor.commands if command[0]]
    # Left out: health checks, the clock's resync, and connection set-up (a new connection
    # SELECTs its database).
    sent = [name for name in sent if name not in ("PING", "TIME", "SELECT", "CLIENT", "HELLO")]
    assert sent == ["EVALSHA"], monitor.commands
    queue = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    message = json.loads(queue.lindex(web_env["RESEND_QUEUE"], 0) or "{}")
    assert message["headers"]["id"] == response.json()["id"]
    assert message["headers"]["task"] == "tango_resend.send_resend"
    assert get_resend(response.json()["id"]) is not None
    counted = queue.hget(f"{web_env['REDIS_KEY_PREFIX']}:metrics", "requests_total|accepted")
    assert counted == "2"


def test_the_webhook_route_runs_on_the_event_loop_not_a_thread(
    client: TestClient, signed: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A storm costs no thread hop per webhook: the route is a coroutine that awaits Redis."""
    from worker.web import app as web

    threads: list[str] = []
    real = web.submit_resend_async

    async def watching(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        asyncio.get_running_loop()  # raises outside an event loop
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(web, "submit_resend_async", watching)
    body = json.dumps({"referenceOrderID": WEBHOOK_ORDER}).encode()
    assert client.post(ROUTE, content=body, headers=signed(body)).status_code == 202
    assert len(threads) == 1 and not threads[0].startswith("AnyIO worker thread")


def test_a_multi_process_listener_turns_nagle_off_on_every_connection() -> None:
    """uvicorn's own listener says protocol 0, so asyncio left Nagle on for each connection
    of `web --workers N`: every response waited ~40 ms for the client's delayed ACK."""
    listener = tcp_listener("127.0.0.1", 0)
    assert listener.proto == socket.IPPROTO_TCP
    nodelay: list[int] = []

    async def serve() -> None:
        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted = writer.get_extra_info("socket")
            nodelay.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if nodelay:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(serve())
    assert nodelay == [1]


@pytest.fixture
def no_lifespan_client(web_env: dict[str, str]) -> Iterator[TestClient]:
    from worker.web.app import create_app

    yield TestClient(create_app())  # not entered: the app's lifespan never runs


def test_without_the_lifespan_each_webhook_opens_and_closes_its_own_client(
    no_lifespan_client: TestClient, signed: Signer
) -> None:
    """An app served without its lifespan (some test clients, some ASGI servers) still works,
    and leaves no connection behind on a closed event loop (warnings are errors here)."""
    for n in range(3):
        body = json.dumps({"referenceOrderID": WEBHOOK_ORDER, "newEtid": f"E00000{n}"}).encode()
        response = no_lifespan_client.post(ROUTE, content=body, headers=signed(body))
        assert response.status_code == 202
