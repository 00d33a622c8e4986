"""Injected faults: error statuses, HTML pages, stalls, malformed bodies, resets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from worker.sandbox import SandboxControl, SandboxServer

TIMEOUT = 5.0
ORDER = "RA240101-0001-01"
OTHER = "RA240101-0001-02"


def _url(server: SandboxServer, order: str = ORDER) -> str:
    return f"{server.base_url}/orders/{order}/resends"


def _last_resent(server: SandboxServer, order: str = ORDER) -> Any:
    return server.state.order_json(order)["lastResentAt"]  # type: ignore[index]


def _answered_calls(control: SandboxControl, expected: int) -> list[dict[str, Any]]:
    # A stalled handler finishes its record after the client gave up: poll for it.
    deadline = time.monotonic() + TIMEOUT
    while True:
        calls = control.calls()
        done = [call for call in calls if call["answered_at"] is not None]
        if len(done) >= expected or time.monotonic() > deadline:
            return calls
        time.sleep(0.02)


def test_json_status_fault_answers_instead_of_resending(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given an order with one queued 503 that carries Retry-After
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=503, retry_after=2.0)

    # When it is resent
    response = tango.post(_url(server), timeout=TIMEOUT)

    # Then Tango's error shape comes back, the resend did not happen
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["i18nKey"] == "503.000"
    assert body["message"] == "Service Unavailable"
    assert body["httpPhrase"] == "Service Unavailable"
    assert _last_resent(server) is None
    # And the fault was used up
    assert tango.post(_url(server), timeout=TIMEOUT).status_code == 201


def test_429_fault_uses_tangos_rate_limit_key(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=429, retry_after=1.5)

    response = tango.post(_url(server), timeout=TIMEOUT)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1.5"
    assert response.json()["i18nKey"] == "429.001"
    assert response.json()["message"] == "Too many requests"


def test_html_fault_looks_like_a_load_balancer_page(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=502, body="html")

    response = tango.post(_url(server), timeout=TIMEOUT)

    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text
    with pytest.raises(requests.JSONDecodeError):
        response.json()
    assert _last_resent(server) is None


def test_faults_are_consumed_in_order_including_wildcards(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    control.add_order(OTHER)
    control.inject_fault(ORDER, status=500, count=2)
    control.inject_fault("*", status=503)

    statuses = [
        tango.post(_url(server, OTHER), timeout=TIMEOUT).status_code,
        tango.post(_url(server), timeout=TIMEOUT).status_code,
        tango.post(_url(server), timeout=TIMEOUT).status_code,
        tango.post(_url(server), timeout=TIMEOUT).status_code,
    ]

    assert statuses == [503, 500, 500, 201]


def test_fault_applies_before_authentication(
    server: SandboxServer, control: SandboxControl, new_session: Callable[..., requests.Session]
) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=503)
    stranger = new_session(auth=("who", "knows"))

    assert stranger.post(_url(server), timeout=TIMEOUT).status_code == 503
    assert stranger.post(_url(server), timeout=TIMEOUT).status_code == 401


def test_delay_before_stalls_then_resends(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, delay_seconds=0.3)

    started = time.monotonic()
    response = tango.post(_url(server), timeout=TIMEOUT)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 201


def test_delay_after_times_out_although_the_resend_happened(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given a resend that Tango accepts but answers too late
    control.add_order(ORDER)
    control.inject_fault(ORDER, delay_seconds=0.6, delay_phase="after")

    # When the client gives up first
    with pytest.raises(requests.Timeout):
        tango.post(_url(server), timeout=(TIMEOUT, 0.2))

    # Then the resend did happen and the window runs
    assert _last_resent(server) is not None
    assert tango.post(_url(server), timeout=TIMEOUT).json()["i18nKey"] == "403.005"
    stalled = _answered_calls(control, expected=2)[0]
    assert stalled["status"] == 201
    assert stalled["answered_at"] - stalled["received_at"] >= 0.6


def test_malformed_201_still_resends(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=201, body="malformed")

    response = tango.post(_url(server), timeout=TIMEOUT)

    assert response.status_code == 201
    with pytest.raises(requests.JSONDecodeError):
        response.json()
    assert _last_resent(server) is not None


def test_reset_drops_the_connection_without_resending(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given a queued connection reset
    control.add_order(ORDER)
    control.inject_fault(ORDER, reset=True)

    # When the order is resent, the client sees a connection error
    with pytest.raises(requests.ConnectionError):
        tango.post(_url(server), timeout=TIMEOUT)

    # Then nothing was resent, the call is logged without a status,
    # and the same session works again on a fresh connection
    assert _last_resent(server) is None
    [call] = control.calls()
    assert call["status"] is None
    assert call["answered_at"] is not None
    assert tango.post(_url(server), timeout=TIMEOUT).status_code == 201


def test_reset_after_processing_loses_the_answer_of_a_real_resend(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    control.inject_fault(ORDER, reset=True, delay_phase="after")

    with pytest.raises(requests.ConnectionError):
        tango.post(_url(server), timeout=TIMEOUT)

    assert _last_resent(server) is not None


def test_an_error_status_after_processing_hides_a_real_resend(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given a gateway that will lose Tango's answer: a 502 page after the resend
    control.add_order(ORDER)
    control.inject_fault(ORDER, status=502, body="html", delay_phase="after")

    # When the order is resent, the caller sees only the gateway's 502
    response = tango.post(_url(server), timeout=TIMEOUT)
    assert response.status_code == 502
    assert "text/html" in response.headers["Content-Type"]

    # Then the resend happened, and its window is open: a call now meets the cooldown
    assert _last_resent(server) is not None
    again = tango.post(_url(server), timeout=TIMEOUT)
    assert again.status_code == 403 and again.json()["i18nKey"] == "403.005"


@pytest.mark.parametrize(
    "bad",
    [{"body": "xml"}, {"delay_phase": "during"}, {"count": 0}, {"status": 99}],
)
def test_invalid_fault_is_refused(control: SandboxControl, bad: dict[str, Any]) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        control.inject_fault(ORDER, **bad)

    assert raised.value.response is not None
    assert raised.value.response.status_code == 400
