"""Order lookup and the order list with its filters and paging."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from worker.sandbox import SandboxControl, SandboxServer

TIMEOUT = 5.0


def test_get_order_returns_tangos_order_shape(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    control.add_order(
        "RA240101-0001-01",
        email="someone@example.com",
        customer_identifier="cust-9",
        account_identifier="acct-9",
        created_at="2024-03-25T22:46:39.922Z",
        etid="E000123",
        external_ref_id="ext-1",
    )

    response = tango.get(f"{server.base_url}/orders/RA240101-0001-01", timeout=TIMEOUT)

    assert response.status_code == 200
    order = response.json()
    assert order["referenceOrderID"] == "RA240101-0001-01"
    assert order["externalRefID"] == "ext-1"
    assert order["customerIdentifier"] == "cust-9"
    assert order["accountIdentifier"] == "acct-9"
    assert order["status"] == "COMPLETE"
    assert order["createdAt"] == "2024-03-25T22:46:39.922Z"
    assert order["recipient"]["email"] == "someone@example.com"
    assert {"firstName", "lastName"} <= set(order["recipient"])
    assert order["amountCharged"]["currencyCode"] == "USD"
    assert order["sendEmail"] is True
    assert order["deliveryMethod"] == "EMAIL"
    assert order["etid"] == "E000123"
    assert order["lastResentAt"] is None
    assert control.calls()[-1]["referenceOrderID"] == "RA240101-0001-01"


def test_get_unknown_order_is_404_017(server: SandboxServer, tango: requests.Session) -> None:
    response = tango.get(f"{server.base_url}/orders/RA999999-9999-99", timeout=TIMEOUT)

    assert response.status_code == 404
    assert response.json()["i18nKey"] == "404.017"


def _seed(control: SandboxControl) -> None:
    # Inserted out of order, to prove the list sorts by creation time.
    for day, customer, account in [
        (5, "cust-a", "acct-1"),
        (1, "cust-a", "acct-1"),
        (3, "cust-b", "acct-2"),
        (2, "cust-a", "acct-2"),
        (4, "cust-b", "acct-1"),
    ]:
        control.add_order(
            f"RA2403{day:02d}-0000-01",
            created_at=f"2024-03-{day:02d}T12:00:00Z",
            customer_identifier=customer,
            account_identifier=account,
            external_ref_id=f"ext-{day}",
        )


def _ids(body: dict[str, Any]) -> list[str]:
    return [order["referenceOrderID"] for order in body["orders"]]


def test_list_orders_pages_in_creation_order(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    _seed(control)
    url = f"{server.base_url}/orders"

    first = tango.get(url, params={"elementsPerBlock": 2, "page": 0}, timeout=TIMEOUT).json()
    last = tango.get(url, params={"elementsPerBlock": 2, "page": 2}, timeout=TIMEOUT).json()
    beyond = tango.get(url, params={"elementsPerBlock": 2, "page": 3}, timeout=TIMEOUT).json()

    assert first["page"] == {"number": 0, "elementsPerBlock": 2, "resultCount": 2, "totalCount": 5}
    assert _ids(first) == ["RA240301-0000-01", "RA240302-0000-01"]
    assert last["page"] == {"number": 2, "elementsPerBlock": 2, "resultCount": 1, "totalCount": 5}
    assert _ids(last) == ["RA240305-0000-01"]
    assert beyond["page"]["resultCount"] == 0
    assert beyond["orders"] == []


def test_list_orders_defaults_to_ten_per_block(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    _seed(control)

    body = tango.get(f"{server.base_url}/orders", timeout=TIMEOUT).json()

    assert body["page"] == {"number": 0, "elementsPerBlock": 10, "resultCount": 5, "totalCount": 5}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"startDate": "2024-03-02T12:00:00Z", "endDate": "2024-03-04T12:00:00Z"},
            ["RA240302-0000-01", "RA240303-0000-01"],
        ),
        ({"customerIdentifier": "cust-b"}, ["RA240303-0000-01", "RA240304-0000-01"]),
        (
            {"customerIdentifier": "cust-a", "accountIdentifier": "acct-1"},
            ["RA240301-0000-01", "RA240305-0000-01"],
        ),
        ({"externalRefID": "ext-4"}, ["RA240304-0000-01"]),
        ({"startDate": "2024-03-04T12:00:00.001+00:00"}, ["RA240305-0000-01"]),
    ],
)
def test_list_orders_filters(
    server: SandboxServer,
    control: SandboxControl,
    tango: requests.Session,
    params: dict[str, str],
    expected: list[str],
) -> None:
    _seed(control)

    response = tango.get(f"{server.base_url}/orders", params=params, timeout=TIMEOUT)

    assert response.status_code == 200
    assert _ids(response.json()) == expected
    assert response.json()["page"]["totalCount"] == len(expected)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"elementsPerBlock": "101"}, "elementsPerBlock"),
        ({"elementsPerBlock": "0"}, "elementsPerBlock"),
        ({"page": "-1"}, "page"),
        ({"page": "first"}, "page"),
        ({"startDate": "yesterday"}, "startDate"),
    ],
)
def test_list_orders_rejects_bad_parameters(
    server: SandboxServer, tango: requests.Session, params: dict[str, str], field: str
) -> None:
    response = tango.get(f"{server.base_url}/orders", params=params, timeout=TIMEOUT)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["path"] == field


def test_list_orders_requires_auth(server: SandboxServer) -> None:
    response = requests.get(f"{server.base_url}/orders", timeout=TIMEOUT)

    assert response.status_code == 401
