"""The Tango client against the sandbox over real HTTP: answers become the right exceptions."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from worker.core.settings import load_settings
from worker.sandbox import SandboxControl, SandboxServer
from worker.tango.auth import BasicAuthorizer
from worker.tango.client import TangoAnswer, TangoClient, build_session
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoCooldownError,
    TangoPermanentError,
    TangoTransientError,
)

ORDER = "RA251125-8001-01"


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(cooldown_seconds=60) as running:
        SandboxControl(running.control_url).add_order(ORDER, email="pat@example.com")
        yield running


def client_for(
    base_url: str, monkeypatch: pytest.MonkeyPatch, key: str = "sandbox-key"
) -> TangoClient:
    monkeypatch.setenv("TANGO_BASE_URL", base_url)
    monkeypatch.setenv("TANGO_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("TANGO_CONNECT_TIMEOUT_SECONDS", "0.5")
    settings = load_settings()
    return TangoClient(settings, build_session(4), BasicAuthorizer("sandbox-platform", key))


def send(client: TangoClient, order: str, body: dict[str, str]) -> TangoAnswer:
    """One resend call, authorised as the executor does it (before the call)."""
    return client.resend(order, body, client.authorization())


def test_resend_201_and_then_the_cooldown_error(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(server.base_url, monkeypatch)
    answer = send(client, ORDER, {"newEtid": "E000001"})
    assert answer.status == 201
    assert (
        answer.body is not None and {"id", "legacyId", "createdAt", "email"} <= answer.body.keys()
    )
    assert answer.request_id and answer.tango_time is not None

    with pytest.raises(TangoCooldownError) as raised:
        send(client, ORDER, {})
    error = raised.value
    assert (error.status, error.i18n_key) == (403, "403.005")
    assert error.last_sent_at is not None and error.tango_now is not None
    assert error.request_id


def test_get_order(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = client_for(server.base_url, monkeypatch).get_order(ORDER)
    assert answer.status == 200
    assert answer.body is not None and answer.body["referenceOrderID"] == ORDER


def test_unknown_order_is_permanent(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TangoPermanentError) as raised:
        send(client_for(server.base_url, monkeypatch), "RA251125-8001-99", {})
    assert raised.value.i18n_key == "404.017"


def test_wrong_key_is_an_authentication_error(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TangoAuthenticationError):
        send(client_for(server.base_url, monkeypatch, key="wrong"), ORDER, {})


@pytest.mark.parametrize(
    ("fault", "ambiguous"),
    [
        ({"status": 502, "body": "html"}, True),  # a gateway: Tango may have acted behind it
        ({"status": 503}, False),
        ({"status": 504}, True),  # a gateway timeout: Tango may have acted behind it
        ({"status": 429, "retry_after": 7}, False),
        # A dropped connection cannot be told apart from one dropped after Tango acted, so
        # both are ambiguous: that only ever costs waiting out a window.
        ({"reset": True}, True),
        ({"reset": True, "delay_phase": "after"}, True),
        ({"delay_seconds": 1.5, "delay_phase": "after"}, True),  # read timeout
    ],
)
def test_faults_are_transient(
    server: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, object],
    ambiguous: bool,
) -> None:
    SandboxControl(server.control_url).inject_fault(ORDER, **fault)  # type: ignore[arg-type]
    with pytest.raises(TangoTransientError) as raised:
        send(client_for(server.base_url, monkeypatch), ORDER, {})
    assert raised.value.ambiguous is ambiguous
    assert raised.value.retry_after == fault.get("retry_after")


def test_malformed_201_still_counts_as_sent(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    SandboxControl(server.control_url).inject_fault(ORDER, status=201, body="malformed")
    answer = send(client_for(server.base_url, monkeypatch), ORDER, {})
    assert answer.status == 201 and answer.body is None


def test_refused_connection_is_transient_and_unambiguous(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TangoTransientError) as raised:
        send(client_for(f"http://127.0.0.1:{port}/raas/v2", monkeypatch), ORDER, {})
    assert raised.value.ambiguous is False


def test_oauth_401_renews_the_shared_token_once(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    """Given a cached token Tango no longer accepts, one renewal happens and the call succeeds."""
    from worker.state.keys import RedisKeys
    from worker.tango.auth import SharedTokenAuthorizer

    with SandboxServer(cooldown_seconds=60) as sandbox:
        control = SandboxControl(sandbox.control_url)
        control.add_order(ORDER)
        for name, value in {
            "TANGO_BASE_URL": sandbox.base_url,
            "TANGO_CLIENT_ID": "sandbox-client",
            "TANGO_CLIENT_SECRET": "sandbox-secret",
            "TANGO_TOKEN_URL": sandbox.token_url,
        }.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        keys = RedisKeys("oauth-test")
        redis_client.set(keys.oauth_token, '{"access_token": "revoked-token"}', ex=3600)
        session = build_session(2)
        client = TangoClient(
            settings, session, SharedTokenAuthorizer(settings, redis_client, session, keys)
        )
        # A resend is sent once per pass of the gate: the 401 comes back to the executor,
        # which renews the token and passes the gate again for the second send.
        stale = client.authorization()
        with pytest.raises(TangoAuthenticationError):
            client.resend(ORDER, {}, stale)
        assert client.renew(stale) is True
        assert client.resend(ORDER, {}, client.authorization()).status == 201
        # Reads renew by themselves, once.
        redis_client.set(keys.oauth_token, '{"access_token": "revoked-again"}', ex=3600)
        assert client.get_order(ORDER).status == 200
        assert control.token_requests() == 2
        auths = [c["auth"] for c in control.calls()]
        assert auths == ["invalid", "bearer", "invalid", "bearer"]
