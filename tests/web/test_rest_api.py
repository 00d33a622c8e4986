"""The REST API (worker/web/rest_api.py) in-process, against the real test Redis: every route's
answers, the read-only token, the cursor, and the OpenAPI schema that names them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.receiver import API_TOKEN
from tests.support.redis_db import unreachable_redis_url
from tests.support.settings import apply_settings
from worker import get_resend
from worker.core.settings import ConfigurationError, get_settings, reset_settings_cache
from worker.runtime import current_runtime, reset_runtime
from worker.state.records import PROMOTE_MARGIN_SECONDS, ResendStatus
from worker.web.app import create_app

READ_TOKEN = "read-only-token-Q8w3-receiver-tests-987654"
WRITE = {"Authorization": f"Bearer {API_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture
def api(web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    apply_settings({"API_READ_TOKEN": READ_TOKEN}, monkeypatch.setenv)
    return TestClient(create_app())


def order(n: int) -> str:
    return f"RA251125-2{n:03d}-01"


def create(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/resends", json={"referenceOrderID": order(1), **body}, headers=WRITE)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def finish_as(request_id: str, status: ResendStatus) -> None:
    record = get_resend(request_id)
    assert record is not None
    final = record.model_copy(update={"status": status, "reason": f"made {status} by the test"})
    assert current_runtime().records.finish(final, PROMOTE_MARGIN_SECONDS)


# --- POST /resends ----------------------------------------------------------------------------


def test_post_resends_queues_and_answers_202_with_the_contract_keys(api: TestClient) -> None:
    answer = create(api, newEmail="pat@example.com", newEtid="E000123")

    assert set(answer) == {"id", "status", "duplicate", "coalesced", "recent"}
    assert answer["status"] == "queued" and not answer["duplicate"] and not answer["coalesced"]
    assert answer["recent"] is False
    record = get_resend(answer["id"])
    assert record is not None and record.request == {
        "newEmail": "pat@example.com",
        "newEtid": "E000123",
    }


def test_an_idempotency_key_seen_before_answers_the_same_id_as_a_duplicate(
    api: TestClient,
) -> None:
    first = create(api, idempotencyKey="ticket-4411")
    again = create(api, idempotencyKey="ticket-4411", newEmail="pat@example.com")

    assert again["id"] == first["id"] and again["duplicate"] is True


def test_an_identical_pending_request_is_coalesced(api: TestClient) -> None:
    first = create(api, newEmail="pat@example.com")
    again = create(api, newEmail="pat@example.com")

    assert again["id"] == first["id"] and again["coalesced"] is True
    assert again["duplicate"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"referenceOrderID": "RA1"}, "referenceOrderID"),
        ({"referenceOrderID": "RA251125-2001-01", "newEmail": "not an address"}, "newEmail"),
        ({"referenceOrderID": "RA251125-2001-01", "newDeliveryMethod": "FAX"}, "newDeliveryMethod"),
        ({"referenceOrderID": "RA251125-2001-01", "idempotencyKey": ""}, "idempotencyKey"),
        ({"referenceOrderID": "RA251125-2001-01", "idempotencyKey": 7}, "idempotencyKey"),
        ({"referenceOrderID": "RA251125-2001-01", "color": "red"}, "color"),
        ({}, "referenceOrderID"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    api: TestClient, redis_client: redis.Redis, body: dict[str, Any], field: str
) -> None:
    response = api.post("/resends", json=body, headers=WRITE)

    assert response.status_code == 422
    assert field in response.json()["fields"]
    assert not redis_client.keys("*:request:*")


def test_the_api_and_the_python_api_give_the_same_messages(api: TestClient) -> None:
    from worker.resend.validation import InvalidResendRequest, validate_resend

    body = {"referenceOrderID": "RA251125-2001-01", "newMobile": "+1415", "newEtid": "X"}
    with pytest.raises(InvalidResendRequest) as raised:
        validate_resend(body)
    response = api.post("/resends", json=body, headers=WRITE)

    assert response.json()["fields"] == raised.value.errors


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}]
)
def test_without_a_valid_token_every_route_is_401(api: TestClient, headers: dict[str, str]) -> None:
    calls = [
        ("post", "/resends"),
        ("get", "/resends"),
        ("get", "/resends/some-id"),
        ("post", "/resends/some-id/cancel"),
        ("post", "/resends/some-id/retry"),
        ("get", f"/orders/{order(1)}/resends"),
    ]
    for method, path in calls:
        response = api.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_redis_down_is_503_with_retry_after(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_settings({"REDIS_URL": unreachable_redis_url()}, monkeypatch.setenv)
    with TestClient(create_app()) as dead:
        created = dead.post("/resends", json={"referenceOrderID": order(1)}, headers=WRITE)
        listed = dead.get("/resends", headers=WRITE)
        cancelled = dead.post("/resends/x/cancel", headers=WRITE)
        retried = dead.post("/resends/x/retry", headers=WRITE)
        history = dead.get(f"/orders/{order(1)}/resends", headers=WRITE)
    for response in (created, listed, cancelled, retried, history):
        assert response.status_code == 503, response.request.url
        assert response.headers["Retry-After"] == "5"


# --- the read-only token ----------------------------------------------------------------------


def test_the_read_only_token_does_every_get_and_no_post(api: TestClient) -> None:
    request_id = create(api)["id"]

    assert api.get("/resends", headers=READ).status_code == 200
    assert api.get(f"/resends/{request_id}", headers=READ).status_code == 200
    assert api.get(f"/orders/{order(1)}/resends", headers=READ).status_code == 200
    for path in ("/resends", f"/resends/{request_id}/cancel", f"/resends/{request_id}/retry"):
        response = api.post(path, headers=READ, json={"referenceOrderID": order(2)})
        assert response.status_code == 403 and response.json()["error"] == "forbidden"
    record = get_resend(request_id)
    assert record is not None and record.status is ResendStatus.QUEUED


def test_api_read_token_needs_api_token_and_must_differ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_READ_TOKEN", READ_TOKEN)
    with pytest.raises(ConfigurationError, match="API_READ_TOKEN needs API_TOKEN"):
        get_settings()
    monkeypatch.setenv("API_TOKEN", READ_TOKEN)
    reset_settings_cache()
    with pytest.raises(ConfigurationError, match="must differ"):
        get_settings()


# --- GET /resends -----------------------------------------------------------------------------


def test_list_is_newest_first_and_the_cursor_walks_every_request_once(api: TestClient) -> None:
    made = [create(api, referenceOrderID=order(n))["id"] for n in range(7)]

    seen: list[str] = []
    first = api.get("/resends?limit=3", headers=READ).json()
    seen += [item["id"] for item in first["items"]]
    # Requests created while paging do not shift the pages already handed out.
    create(api, referenceOrderID=order(50))
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/resends", params={"limit": 3, "cursor": cursor}, headers=READ).json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]

    assert seen == list(reversed(made))


def test_a_page_that_ends_the_list_exactly_has_no_cursor(api: TestClient) -> None:
    for n in range(4):
        create(api, referenceOrderID=order(n))
    first = api.get("/resends?limit=2", headers=READ).json()
    last = api.get("/resends", params={"limit": 2, "cursor": first["next_cursor"]}, headers=READ)

    assert len(last.json()["items"]) == 2 and last.json()["next_cursor"] is None


def test_list_filters_by_order_status_and_since(api: TestClient) -> None:
    kept = create(api, referenceOrderID=order(1))["id"]
    other = create(api, referenceOrderID=order(2))["id"]
    finish_as(other, ResendStatus.FAILED)

    by_order = api.get("/resends", params={"order": order(1)}, headers=READ).json()
    by_status = api.get("/resends", params={"status": "failed"}, headers=READ).json()
    recent = api.get("/resends", params={"since": "1h"}, headers=READ).json()

    assert [item["id"] for item in by_order["items"]] == [kept]
    assert [item["id"] for item in by_status["items"]] == [other]
    assert by_status["items"][0]["status"] == "failed"
    assert {item["id"] for item in recent["items"]} == {kept, other}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "lost"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"order": "RA1"}, "order"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_list_parameters_are_422_naming_them(
    api: TestClient, query: dict[str, str], field: str
) -> None:
    response = api.get("/resends", params=query, headers=READ)

    assert response.status_code == 422 and field in response.json()["fields"]


# --- GET /resends/{id} ------------------------------------------------------------------------


def test_read_resend_is_as_it_was(api: TestClient) -> None:
    request_id = create(api)["id"]

    assert api.get(f"/resends/{request_id}", headers=WRITE).json()["id"] == request_id
    assert api.get(f"/resends/{uuid.uuid4()}", headers=WRITE).status_code == 404
    operation = api.get("/openapi.json").json()["paths"]["/resends/{request_id}"]["get"]
    assert operation["operationId"] == "readResend"
    assert set(operation["responses"]) == {"200", "401", "404", "422"}


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_answers_200_then_409_cancelled_and_404_for_an_unknown_id(
    api: TestClient,
) -> None:
    request_id = create(api)["id"]

    first = api.post(f"/resends/{request_id}/cancel", headers=WRITE)
    again = api.post(f"/resends/{request_id}/cancel", headers=WRITE)
    unknown = api.post(f"/resends/{uuid.uuid4()}/cancel", headers=WRITE)

    assert (first.status_code, first.json()) == (200, {"result": "cancelled"})
    assert (again.status_code, again.json()) == (409, {"result": "cancelled"})
    assert unknown.status_code == 404


@pytest.mark.parametrize("final", [ResendStatus.SENT, ResendStatus.FAILED])
def test_cancel_of_a_finished_request_is_409_with_its_status(
    api: TestClient, final: ResendStatus
) -> None:
    request_id = create(api)["id"]
    finish_as(request_id, final)

    response = api.post(f"/resends/{request_id}/cancel", headers=WRITE)

    assert (response.status_code, response.json()) == (409, {"result": final.value})


def test_cancel_of_a_request_in_flight_is_409_in_flight(api: TestClient) -> None:
    request_id = create(api)["id"]
    runtime = current_runtime()
    runtime.redis.hset(runtime.keys.record(request_id), "calling_until", "9999999999999")

    response = api.post(f"/resends/{request_id}/cancel", headers=WRITE)

    assert (response.status_code, response.json()) == (409, {"result": "in_flight"})


# --- retry ------------------------------------------------------------------------------------


def test_retry_of_a_failed_request_is_202_and_idempotent(api: TestClient) -> None:
    request_id = create(api, newEmail="pat@example.com")["id"]
    finish_as(request_id, ResendStatus.FAILED)

    first = api.post(f"/resends/{request_id}/retry", headers=WRITE)
    again = api.post(f"/resends/{request_id}/retry", headers=WRITE)

    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert first.json()["retry_of"] == request_id and first.json()["id"] != request_id
    retry = get_resend(first.json()["id"])
    assert retry is not None and retry.retry_of == request_id
    assert retry.request == {"newEmail": "pat@example.com"}


def test_retry_of_a_request_that_did_not_fail_is_409_and_of_an_unknown_one_404(
    api: TestClient,
) -> None:
    request_id = create(api)["id"]

    assert api.post(f"/resends/{request_id}/retry", headers=WRITE).status_code == 409
    assert api.post(f"/resends/{uuid.uuid4()}/retry", headers=WRITE).status_code == 404


# --- GET /orders/{id}/resends -----------------------------------------------------------------


def test_an_orders_resends_are_every_request_oldest_first_with_its_calls(
    api: TestClient,
) -> None:
    first = create(api)["id"]
    finish_as(first, ResendStatus.SENT)
    second = create(api, newEmail="pat@example.com")["id"]
    create(api, referenceOrderID=order(9))

    response = api.get(f"/orders/{order(1)}/resends", headers=READ)

    assert response.status_code == 200
    answer = response.json()
    assert answer["referenceOrderID"] == order(1)
    assert [item["id"] for item in answer["requests"]] == [first, second]
    assert {"attempt_log", "status", "tango_request_ids"} <= set(answer["requests"][0])


def test_an_order_without_requests_is_an_empty_list_and_a_bad_id_422(api: TestClient) -> None:
    empty = api.get(f"/orders/{order(7)}/resends", headers=READ)
    bad = api.get("/orders/not-an-order/resends", headers=READ)

    assert (empty.status_code, empty.json()["requests"]) == (200, [])
    assert bad.status_code == 422 and "referenceOrderID" in bad.json()["fields"]


# --- the schema and the switch ----------------------------------------------------------------


def test_every_route_is_in_the_schema_with_links_from_post_resends(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    operations = {
        operation["operationId"] for path in schema["paths"].values() for operation in path.values()
    }
    links = schema["paths"]["/resends"]["post"]["responses"]["202"]["links"]

    assert {
        "createResend",
        "listResends",
        "readResend",
        "cancelResend",
        "retryResend",
        "listOrderResends",
    } <= operations
    assert {link["operationId"] for link in links.values()} == {
        "readResend",
        "cancelResend",
        "retryResend",
    }
    assert not any(path.startswith("/console") for path in schema["paths"])


def test_without_api_token_the_api_and_the_console_do_not_exist(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN")
    reset_settings_cache()
    reset_runtime()
    bare = TestClient(create_app())

    assert bare.post("/resends", json={}, headers=WRITE).status_code in {404, 405}
    assert bare.get("/resends", headers=WRITE).status_code == 404
    assert bare.get(f"/orders/{order(1)}/resends", headers=WRITE).status_code == 404
    assert bare.get("/console").status_code == 404
