"""A resend call bound as a whole (worker/tango/deadline.py), over real HTTP on loopback:
requests' timeouts are per read, so a server that trickles its answer would hold a call
past the gate's bound on it; and a call whose send-by time passed while it connected sends
nothing at all."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from worker.core.settings import load_settings
from worker.tango.auth import BasicAuthorizer
from worker.tango.client import TangoClient, build_session
from worker.tango.deadline import CallDeadline, call_deadline
from worker.tango.errors import TangoTransientError

ORDER = "RA251125-8001-01"


class TricklingServer:
    """Answers every request with a 201 whose body arrives a byte every `gap` seconds, and
    records what bytes each connection received."""

    def __init__(self, gap: float = 0.2, body_bytes: int = 40) -> None:
        self.gap, self.body_bytes = gap, body_bytes
        self.received: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TricklingServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(3.0)
            try:
                data = connection.recv(65536)
            except OSError:
                data = b""
            self.received.append(data)
            if not data:
                return
            head = (
                "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                f"Content-Length: {self.body_bytes}\r\n\r\n"
            )
            try:
                connection.sendall(head.encode())
                for _ in range(self.body_bytes):
                    if self._stop.is_set():
                        return
                    time.sleep(self.gap)
                    connection.sendall(b" ")
            except OSError:
                return


@pytest.fixture
def trickling() -> Iterator[TricklingServer]:
    with TricklingServer() as server:
        yield server


def client_for(
    base_url: str,
    monkeypatch: pytest.MonkeyPatch,
    credentials: tuple[str, str] = ("platform", "key"),
) -> TangoClient:
    monkeypatch.setenv("TANGO_BASE_URL", base_url)
    monkeypatch.setenv("TANGO_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("TANGO_CONNECT_TIMEOUT_SECONDS", "0.5")
    return TangoClient(load_settings(), build_session(4), BasicAuthorizer(*credentials))


def test_an_answer_trickled_past_the_deadline_is_cut_off_as_ambiguous(
    trickling: TricklingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte comes within the 0.5 s read timeout, so requests alone would read for 8 s;
    under a deadline 1 s away the call is over in about 1 s, and ambiguous (Tango had the
    request)."""
    client = client_for(trickling.base_url, monkeypatch)
    started = time.monotonic()
    deadline = CallDeadline(send_by=started + 0.5, done_by=started + 1.0)
    with call_deadline(deadline), pytest.raises(TangoTransientError) as raised:
        client.resend(ORDER, {"newEtid": "E000001"}, "Basic x")
    took = time.monotonic() - started

    assert took < 1.6, f"the call lasted {took:.2f}s, past its deadline"
    assert raised.value.ambiguous
    assert trickling.received and trickling.received[0].startswith(b"POST ")


def test_a_call_whose_send_by_passed_sends_no_byte_and_is_not_ambiguous(
    trickling: TricklingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check comes once connected (after name resolution and the connection itself),
    right before the first byte: Tango sees nothing, so the outcome is known."""
    client = client_for(trickling.base_url, monkeypatch)
    now = time.monotonic()
    late = CallDeadline(send_by=now - 0.01, done_by=now + 1.0)
    with call_deadline(late), pytest.raises(TangoTransientError) as raised:
        client.resend(ORDER, {"newEtid": "E000001"}, "Basic x")
    assert not raised.value.ambiguous
    assert "not sent" in str(raised.value)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not trickling.received:
        time.sleep(0.02)
    assert all(data == b"" for data in trickling.received), "no request byte reached the server"


def test_without_a_deadline_a_call_is_as_before(
    trickling: TricklingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Order listings and the CLI's calls carry no deadline: requests' own timeouts only."""
    trickling.body_bytes = 3
    answer = client_for(trickling.base_url, monkeypatch).resend(ORDER, {}, "Basic x")
    assert answer.status == 201


def test_a_bound_call_keeps_its_connection_alive_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body read under a deadline hands its connection back to the pool: the next call
    reuses it (no new connection, no new TLS handshake per resend)."""
    from worker.sandbox import SandboxControl, SandboxServer

    with SandboxServer(cooldown_seconds=0) as server:
        SandboxControl(server.control_url).add_order(ORDER, email="pat@example.com")
        client = client_for(server.base_url, monkeypatch, ("sandbox-platform", "sandbox-key"))
        opened: list[object] = []
        import urllib3.util.connection

        connect = urllib3.util.connection.create_connection

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            opened.append(args[0])
            return connect(*args, **kwargs)

        monkeypatch.setattr("urllib3.util.connection.create_connection", counting)
        for _ in range(3):
            now = time.monotonic()
            with call_deadline(CallDeadline(send_by=now + 1.0, done_by=now + 2.0)):
                assert client.resend(ORDER, {}, client.authorization()).status == 201
        assert len(opened) == 1
