"""The per-order window (403.005): message, each last-sent format, and reopening."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests

from worker.sandbox import SandboxServer

TIMEOUT = 5.0
ORDER = "RA240101-0001-01"


def _java(moment: datetime) -> str:
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return (
        f"{days[moment.weekday()]} {months[moment.month - 1]} {moment.day:02d} "
        f"{moment:%H:%M:%S} UTC {moment.year}"
    )


def _messageformat(moment: datetime) -> str:
    """Java's MessageFormat default for a Date, en_US, UTC JVM: "12/5/26, 11:18 PM"."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment:%y}, {hour}:{moment:%M} {half}"


def _expected_last_sent(created_at: str, fmt: str) -> str:
    moment = datetime.fromisoformat(created_at)
    epoch_ms = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return {
        "iso": created_at,
        "iso-seconds": created_at[:19] + "Z",
        "iso-seconds-offset": created_at[:19] + "+00:00",
        "epoch-ms": str(epoch_ms),
        "java": _java(moment),
        "java-messageformat": _messageformat(moment),
        "garbage": "sometime recently",
    }[fmt]


@pytest.mark.parametrize(
    "fmt",
    [
        "iso",
        "iso-seconds",
        "iso-seconds-offset",
        "epoch-ms",
        "java",
        "java-messageformat",
        "garbage",
    ],
)
def test_window_refuses_with_last_sent_time_then_reopens(
    make_server: Callable[..., SandboxServer], tango: requests.Session, fmt: str
) -> None:
    # Given a one-second window and an order just resent
    server = make_server(cooldown_seconds=1.0, last_sent_format=fmt)
    server.state.add_order(ORDER)
    url = f"{server.base_url}/orders/{ORDER}/resends"
    first = tango.post(url, timeout=TIMEOUT)
    assert first.status_code == 201
    created_at = first.json()["createdAt"]

    # When it is resent again at once
    refused = tango.post(url, timeout=TIMEOUT)

    # Then Tango's 403.005 names the window and the last resend in the configured format
    assert refused.status_code == 403
    body = refused.json()
    assert body["i18nKey"] == "403.005"
    assert body["httpPhrase"] == "Forbidden"
    assert body["message"] == (
        "Cannot send more than once every 1 seconds. "
        f"Last sent at {_expected_last_sent(created_at, fmt)}"
    )
    assert datetime.fromisoformat(body["timestamp"]) >= datetime.fromisoformat(created_at)

    # And the window opens again once it has passed
    deadline = time.monotonic() + 5.0
    again = refused
    while again.status_code == 403 and time.monotonic() < deadline:
        time.sleep(0.05)
        again = tango.post(url, timeout=TIMEOUT)
    assert again.status_code == 201
    elapsed = datetime.fromisoformat(again.json()["createdAt"]) - datetime.fromisoformat(created_at)
    assert elapsed.total_seconds() >= 1.0


def test_fractional_window_is_rendered_as_given(
    make_server: Callable[..., SandboxServer], tango: requests.Session
) -> None:
    server = make_server(cooldown_seconds=1.5)
    server.state.add_order(ORDER)
    url = f"{server.base_url}/orders/{ORDER}/resends"
    assert tango.post(url, timeout=TIMEOUT).status_code == 201

    refused = tango.post(url, timeout=TIMEOUT)

    assert refused.json()["message"].startswith("Cannot send more than once every 1.5 seconds.")


def test_default_window_is_thirty_seconds(server: SandboxServer, tango: requests.Session) -> None:
    server.state.add_order(ORDER)
    url = f"{server.base_url}/orders/{ORDER}/resends"
    assert tango.post(url, timeout=TIMEOUT).status_code == 201

    refused = tango.post(url, timeout=TIMEOUT)

    assert refused.json()["message"].startswith("Cannot send more than once every 30 seconds.")


def test_refused_resend_does_not_move_the_window(
    make_server: Callable[..., SandboxServer], tango: requests.Session
) -> None:
    server = make_server(cooldown_seconds=30.0)
    server.state.add_order(ORDER)
    url = f"{server.base_url}/orders/{ORDER}/resends"
    created_at = tango.post(url, timeout=TIMEOUT).json()["createdAt"]

    tango.post(url, timeout=TIMEOUT)
    tango.post(url, timeout=TIMEOUT)

    assert server.state.order_json(ORDER)["lastResentAt"] == created_at  # type: ignore[index]
