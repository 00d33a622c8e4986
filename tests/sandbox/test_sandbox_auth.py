"""Authentication: HTTP Basic, OAuth bearer tokens, expiry and token counting."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from worker.sandbox import SandboxControl, SandboxServer

TIMEOUT = 5.0
CLIENT_FORM = {
    "client_id": "sandbox-client",
    "client_secret": "sandbox-secret",
    "grant_type": "client_credentials",
    "scope": "raas.all",
    "audience": "https://api.tangocard.com/",
}


def _fetch_token(server: SandboxServer, **overrides: str) -> requests.Response:
    return requests.post(server.token_url, data={**CLIENT_FORM, **overrides}, timeout=TIMEOUT)


def test_basic_auth_with_platform_key_is_accepted(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given an order
    control.add_order("RA240101-0001-01")
    # When it is read with the platform name and key
    response = tango.get(f"{server.base_url}/orders/RA240101-0001-01", timeout=TIMEOUT)
    # Then the order comes back and the call is logged as basic
    assert response.status_code == 200
    assert control.calls()[-1]["auth"] == "basic"


def test_wrong_basic_key_is_401(
    server: SandboxServer,
    control: SandboxControl,
    new_session: Callable[..., requests.Session],
) -> None:
    control.add_order("RA240101-0001-01")
    session = new_session(auth=("sandbox-platform", "wrong-key"))

    response = session.post(f"{server.base_url}/orders/RA240101-0001-01/resends", timeout=TIMEOUT)

    assert response.status_code == 401
    body = response.json()
    assert body["i18nKey"] == "401.001"
    assert body["message"] == "Unauthorized"
    assert body["httpCode"] == 401
    assert body["httpPhrase"] == "Unauthorized"
    assert control.calls()[-1]["auth"] == "invalid"
    assert server.state.order_json("RA240101-0001-01")["lastResentAt"] is None  # type: ignore[index]


def test_missing_auth_is_401_and_logged_as_none(
    server: SandboxServer, control: SandboxControl, new_session: Callable[..., requests.Session]
) -> None:
    control.add_order("RA240101-0001-01")
    session = new_session(auth=None)

    response = session.get(f"{server.base_url}/orders/RA240101-0001-01", timeout=TIMEOUT)

    assert response.status_code == 401
    assert control.calls()[-1]["auth"] == "none"


def test_bearer_token_from_oauth_route_is_accepted(
    server: SandboxServer, control: SandboxControl, new_session: Callable[..., requests.Session]
) -> None:
    # Given a token from the client-credentials route
    token_response = _fetch_token(server)
    assert token_response.status_code == 200
    token = token_response.json()
    assert token["scope"] == "raas.all"
    assert token["expires_in"] == 86400
    assert token["token_type"] == "Bearer"
    assert token["access_token"]
    control.add_order("RA240101-0001-01")
    session = new_session(auth=None)
    session.headers["Authorization"] = f"Bearer {token['access_token']}"

    # When a resend is made with it
    response = session.post(f"{server.base_url}/orders/RA240101-0001-01/resends", timeout=TIMEOUT)

    # Then it succeeds and is logged as bearer
    assert response.status_code == 201
    assert control.calls()[-1]["auth"] == "bearer"


def test_unknown_bearer_token_is_401(
    server: SandboxServer, control: SandboxControl, new_session: Callable[..., requests.Session]
) -> None:
    control.add_order("RA240101-0001-01")
    session = new_session(auth=None)
    session.headers["Authorization"] = "Bearer not-a-token"

    response = session.get(f"{server.base_url}/orders/RA240101-0001-01", timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.json()["i18nKey"] == "401.001"


def test_token_expires_after_its_ttl_on_the_sandbox_clock(
    make_server: Callable[..., SandboxServer], new_session: Callable[..., requests.Session]
) -> None:
    # Given a sandbox whose tokens live one second
    server = make_server(token_ttl_seconds=1)
    server.state.add_order("RA240101-0001-01")
    token = _fetch_token(server).json()
    assert token["expires_in"] == 1
    session = new_session(auth=None)
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    url = f"{server.base_url}/orders/RA240101-0001-01"
    assert session.get(url, timeout=TIMEOUT).status_code == 200

    # When we keep using it
    deadline = time.monotonic() + 5.0
    status = 200
    while status == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        status = session.get(url, timeout=TIMEOUT).status_code

    # Then it stops working
    assert status == 401


def test_wrong_client_secret_is_refused_and_counted(server: SandboxServer) -> None:
    response = _fetch_token(server, client_secret="nope")

    assert response.status_code == 401
    assert response.json() == {"error": "access_denied", "error_description": "Unauthorized"}
    assert server.state.token_requests() == 1


def test_token_request_as_json_is_accepted(server: SandboxServer) -> None:
    response = requests.post(server.token_url, json=CLIENT_FORM, timeout=TIMEOUT)

    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


def test_every_token_request_is_counted(server: SandboxServer, control: SandboxControl) -> None:
    assert control.token_requests() == 0

    _fetch_token(server)
    _fetch_token(server)
    _fetch_token(server, client_id="stranger")
    _fetch_token(server, grant_type="password")

    assert control.token_requests() == 4
    assert control.calls() == []  # the token route is not a RaaS call
