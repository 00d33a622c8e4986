"""The resend route: success shape, refusals, validation, atomic window, portal resends."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import datetime

import pytest
import requests

from worker.sandbox import SandboxControl, SandboxServer

TIMEOUT = 5.0
ORDER = "RA240101-0001-01"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ISO_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _resend_url(server: SandboxServer, order: str = ORDER) -> str:
    return f"{server.base_url}/orders/{order}/resends"


def test_resend_answers_201_in_tangos_shape(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER, email="first@example.com")

    response = tango.post(_resend_url(server), timeout=TIMEOUT)

    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    assert UUID4.fullmatch(response.headers["X-REQUEST-ID"])
    assert response.headers["Date"].endswith(" GMT")
    body = response.json()
    assert set(body) == {"id", "legacyId", "createdAt", "email"}
    assert isinstance(body["id"], int)
    assert isinstance(body["legacyId"], str)
    assert ISO_MS_Z.fullmatch(body["createdAt"])
    assert body["email"] == "first@example.com"
    assert server.state.order_json(ORDER)["lastResentAt"] == body["createdAt"]  # type: ignore[index]


def test_resend_ids_increase(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order("RA240101-0001-01")
    control.add_order("RA240101-0001-02")

    first = tango.post(_resend_url(server, "RA240101-0001-01"), timeout=TIMEOUT).json()
    second = tango.post(_resend_url(server, "RA240101-0001-02"), timeout=TIMEOUT).json()

    assert second["id"] > first["id"]


def test_resend_applies_new_contact_fields(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER, email="old@example.com")
    update = {
        "newEmail": "new@example.com",
        "newMobile": "+15555550123",
        "newEtid": "E123456",
        "newDeliveryMethod": "PHONE",
    }

    response = tango.post(_resend_url(server), json=update, timeout=TIMEOUT)

    assert response.status_code == 201
    assert response.json()["email"] == "new@example.com"
    order = tango.get(f"{server.base_url}/orders/{ORDER}", timeout=TIMEOUT).json()
    assert order["recipient"]["email"] == "new@example.com"
    assert order["recipient"]["mobile"] == "+15555550123"
    assert order["etid"] == "E123456"
    assert order["deliveryMethod"] == "PHONE"


def test_unknown_order_is_404_017(server: SandboxServer, tango: requests.Session) -> None:
    response = tango.post(_resend_url(server, "RA999999-9999-99"), timeout=TIMEOUT)

    assert response.status_code == 404
    body = response.json()
    assert body["i18nKey"] == "404.017"
    assert body["message"] == "Order not found"
    assert body["path"] == "/raas/v2/orders/RA999999-9999-99/resends"
    assert body["requestId"] == response.headers["X-REQUEST-ID"]
    assert "errors" not in body


def test_order_created_without_email_is_403_003(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER, send_email=False)

    response = tango.post(_resend_url(server), timeout=TIMEOUT)

    assert response.status_code == 403
    body = response.json()
    assert body["i18nKey"] == "403.003"
    assert body["message"] == "Cannot resend an email that was created with sendEmail=false"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("newEmail", "not-an-email"),
        ("newMobile", "5555550123"),
        ("newMobile", "+1234"),
        ("newEtid", "T000000"),
        ("newDeliveryMethod", "PIGEON"),
        ("newEmail", 42),
        ("surprise", "x"),
    ],
)
def test_bad_field_is_400_with_a_field_error(
    server: SandboxServer,
    control: SandboxControl,
    tango: requests.Session,
    field: str,
    value: object,
) -> None:
    control.add_order(ORDER)

    response = tango.post(_resend_url(server), json={field: value}, timeout=TIMEOUT)

    assert response.status_code == 400
    body = response.json()
    assert body["httpCode"] == 400
    assert body["i18nKey"].startswith("400.")
    [error] = body["errors"]
    assert set(error) == {"path", "i18nKey", "message", "invalidValue", "constraint"}
    assert error["path"] == field
    assert error["invalidValue"] == value
    assert server.state.order_json(ORDER)["lastResentAt"] is None  # type: ignore[index]


def test_non_json_body_is_400(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)

    response = tango.post(
        _resend_url(server),
        data=b"newEmail=a@b.co",
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert response.json()["i18nKey"] == "400.000"


def test_null_fields_keep_the_original_values(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER, email="keep@example.com")

    response = tango.post(_resend_url(server), json={"newEmail": None}, timeout=TIMEOUT)

    assert response.status_code == 201
    assert response.json()["email"] == "keep@example.com"


def test_two_parallel_resends_of_one_order_succeed_exactly_once(
    server: SandboxServer, control: SandboxControl, new_session: Callable[..., requests.Session]
) -> None:
    # Given one order and two clients released at the same moment
    control.add_order(ORDER)
    sessions = [new_session(), new_session()]
    barrier = threading.Barrier(len(sessions))
    statuses: list[int] = []

    def _resend(session: requests.Session) -> None:
        barrier.wait()
        statuses.append(session.post(_resend_url(server), timeout=TIMEOUT).status_code)

    threads = [threading.Thread(target=_resend, args=(s,)) for s in sessions]
    # When both resend
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)

    # Then exactly one wins and the other meets the window
    assert sorted(statuses) == [201, 403]


def test_portal_resend_closes_the_window_for_the_api(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given an order resent from Tango's portal
    control.add_order(ORDER)
    control.portal_resend(ORDER)

    # When the API resends it
    response = tango.post(_resend_url(server), timeout=TIMEOUT)

    # Then the window refuses it, citing the portal's resend
    assert response.status_code == 403
    assert response.json()["i18nKey"] == "403.005"
    last_resent = server.state.order_json(ORDER)["lastResentAt"]  # type: ignore[index]
    assert response.json()["message"].endswith(f"Last sent at {last_resent}")


def test_portal_resend_restarts_the_window_even_inside_it(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(ORDER)
    first = tango.post(_resend_url(server), timeout=TIMEOUT).json()["createdAt"]

    control.portal_resend(ORDER)

    last_resent = server.state.order_json(ORDER)["lastResentAt"]  # type: ignore[index]
    assert datetime.fromisoformat(last_resent) >= datetime.fromisoformat(first)


def test_portal_resend_of_unknown_order_is_404(control: SandboxControl) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        control.portal_resend("RA999999-9999-99")

    assert raised.value.response is not None
    assert raised.value.response.status_code == 404
