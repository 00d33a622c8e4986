"""Server plumbing: call log, controls, clock, headers, errors, keep-alive, CLI entry."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest
import requests

from tests.support.processes import piped_python
from worker.sandbox import SandboxControl, SandboxServer

TIMEOUT = 5.0
ORDER = "RA240101-0001-01"
PLATFORM = ("sandbox-platform", "sandbox-key")


def test_urls_name_the_bound_port(server: SandboxServer) -> None:
    assert server.port > 0
    assert server.control_url == f"http://127.0.0.1:{server.port}"
    assert server.base_url == f"http://127.0.0.1:{server.port}/raas/v2"
    assert server.token_url == f"http://127.0.0.1:{server.port}/oauth/token"


def test_call_log_records_every_raas_request(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given an order and a resend with a body
    control.add_order(ORDER)
    before = server.state.now()
    response = tango.post(
        f"{server.base_url}/orders/{ORDER}/resends",
        json={"newEmail": "new@example.com"},
        timeout=TIMEOUT,
    )
    tango.post(f"{server.base_url}/orders/{ORDER}/resends", timeout=TIMEOUT)
    after = server.state.now()

    # When the log is read
    calls = control.calls()

    # Then each RaaS request is there with its outcome; control calls are not
    assert len(calls) == 2
    first, second = calls
    assert set(first) == {
        "method", "path", "referenceOrderID", "status", "i18nKey", "requestId", "auth",
        "body", "received_at", "answered_at", "probe",
    }  # fmt: skip
    assert first["method"] == "POST"
    assert first["path"] == f"/raas/v2/orders/{ORDER}/resends"
    assert first["referenceOrderID"] == ORDER
    assert first["status"] == 201
    assert first["i18nKey"] is None
    assert first["requestId"] == response.headers["X-REQUEST-ID"]
    assert first["auth"] == "basic"
    assert first["body"] == {"newEmail": "new@example.com"}
    assert before <= first["received_at"] <= first["answered_at"] <= after
    assert second["status"] == 403
    assert second["i18nKey"] == "403.005"
    assert second["body"] is None


def test_call_log_is_a_copy(server: SandboxServer, tango: requests.Session) -> None:
    tango.get(f"{server.base_url}/orders/{ORDER}", timeout=TIMEOUT)

    server.state.calls()[0]["status"] = 999

    assert server.state.calls()[0]["status"] == 404


def test_reset_forgets_everything(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given an order, a fault, a call and a token
    control.add_order(ORDER)
    control.inject_fault("*", status=500)
    tango.get(f"{server.base_url}/orders/{ORDER}", timeout=TIMEOUT)
    requests.post(
        server.token_url,
        data={
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "grant_type": "client_credentials",
        },
        timeout=TIMEOUT,
    )

    # When the sandbox is reset
    control.reset()

    # Then all of it is gone
    assert control.calls() == []
    assert control.token_requests() == 0
    assert tango.get(f"{server.base_url}/orders/{ORDER}", timeout=TIMEOUT).status_code == 404
    control.add_order(ORDER)
    assert tango.post(f"{server.base_url}/orders/{ORDER}/resends", timeout=TIMEOUT).ok


def test_clock_offset_shows_in_date_header_and_error_timestamp(
    make_server: Callable[..., SandboxServer], tango: requests.Session
) -> None:
    # Given a Tango whose clock is a day behind ours
    offset = -86400.0
    server = make_server(clock_offset_seconds=offset)

    # When it answers
    response = tango.get(f"{server.base_url}/orders/{ORDER}", timeout=TIMEOUT)

    # Then both its Date header and its error timestamp are on its own clock
    expected = time.time() + offset
    date_header = parsedate_to_datetime(response.headers["Date"]).timestamp()
    timestamp = datetime.fromisoformat(response.json()["timestamp"]).timestamp()
    assert abs(date_header - expected) < 5
    assert abs(timestamp - expected) < 5
    assert abs(server.state.now() - expected) < 5


def test_moving_the_clock_moves_the_window(
    make_server: Callable[..., SandboxServer], tango: requests.Session
) -> None:
    server = make_server(cooldown_seconds=30.0)
    server.state.add_order(ORDER)
    url = f"{server.base_url}/orders/{ORDER}/resends"
    assert tango.post(url, timeout=TIMEOUT).status_code == 201

    server.state.set_clock_offset(31.0)

    assert tango.post(url, timeout=TIMEOUT).status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/raas/v2/catalogs", 404),
        ("GET", "/raas/v2/orders/RA1/resends", 405),
        ("DELETE", "/raas/v2/orders/RA1", 405),
    ],
)
def test_other_paths_answer_json_errors(
    server: SandboxServer, tango: requests.Session, method: str, path: str, status: int
) -> None:
    response = tango.request(method, server.control_url + path, timeout=TIMEOUT)

    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["httpCode"] == status


def test_oversized_body_is_413(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    huge = {"newEmail": "a" * (64 * 1024) + "@example.com"}

    response = tango.post(f"{server.base_url}/orders/{ORDER}/resends", json=huge, timeout=TIMEOUT)

    assert response.status_code == 413
    assert control.calls()[-1]["status"] == 413
    # The session recovers on a new connection.
    assert tango.post(f"{server.base_url}/orders/{ORDER}/resends", timeout=TIMEOUT).ok


def test_keep_alive_session_serves_many_requests(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    started = time.monotonic()

    statuses = {
        tango.get(f"{server.base_url}/orders/{ORDER}", timeout=TIMEOUT).status_code
        for _ in range(50)
    }

    assert statuses == {200}
    # Would take two seconds if every answer waited on a delayed ACK.
    assert time.monotonic() - started < 1.5


def test_server_prints_nothing_per_request(
    server: SandboxServer,
    control: SandboxControl,
    tango: requests.Session,
    capfd: pytest.CaptureFixture[str],
) -> None:
    control.add_order(ORDER, email="private@example.com")
    tango.post(f"{server.base_url}/orders/{ORDER}/resends", timeout=TIMEOUT)
    tango.get(f"{server.base_url}/nowhere", timeout=TIMEOUT)

    captured = capfd.readouterr()

    assert captured.out == ""
    assert captured.err == ""


def test_health_and_context_manager() -> None:
    with SandboxServer() as server, SandboxControl(server.control_url) as control:
        assert control.health() is True
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.control_url}/_sandbox/health", timeout=TIMEOUT)


def test_unknown_last_sent_format_is_refused() -> None:
    with pytest.raises(ValueError, match="last_sent_format"):
        SandboxServer(last_sent_format="roman")


def test_main_serve_announces_itself_and_stops_on_sigterm() -> None:
    # Given the CLI entry point running in its own process
    code = (
        "from worker.sandbox.server import main_serve; "
        f"main_serve('127.0.0.1', 0, 2.0, orders=[{ORDER!r}], last_sent_format='epoch-ms')"
    )
    with piped_python(["-c", code]) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Tango sandbox listening on http://127.0.0.1:")
        base_url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert base_url.endswith("/raas/v2")
        assert f"(token URL {base_url.removesuffix('/raas/v2')}/oauth/token)" in line
        root = base_url.removesuffix("/raas/v2")
        assert requests.get(f"{root}/_sandbox/health", timeout=TIMEOUT).json() == {"ok": True}
        seeded = requests.get(f"{base_url}/orders/{ORDER}", auth=PLATFORM, timeout=TIMEOUT)
        assert seeded.status_code == 200

        # When it is sent SIGTERM
        process.send_signal(signal.SIGTERM)

        # Then it exits cleanly
        assert process.wait(timeout=TIMEOUT) == 0


def test_utc_rendering_is_independent_of_local_zone() -> None:
    from worker.sandbox.formats import iso_ms, java_date, parse_rfc3339_ms

    ms = parse_rfc3339_ms("2024-03-25T22:46:39.922Z")

    assert ms == 1711406799922
    assert iso_ms(ms) == "2024-03-25T22:46:39.922Z"
    assert java_date(ms) == "Mon Mar 25 22:46:39 UTC 2024"
    assert datetime.fromtimestamp(ms / 1000, tz=UTC).year == 2024
