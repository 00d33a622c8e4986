"""One name per state (README, "States"): the CLI, the REST API, the webhook answer and the
console name a request's state alike, from its record in the real test Redis."""

from __future__ import annotations

import json
import time

import redis
from fastapi.testclient import TestClient

from tests.support.cli import in_process_cli, json_out
from tests.support.receiver import API_TOKEN, Signer
from tests.web.test_console import csrf_of, sign_in
from worker import cancel_resend, enqueue_resend
from worker.runtime import current_runtime
from worker.web.app import create_app

ORDER = "RA251125-3101-01"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def rest_states(client: TestClient, *request_ids: str) -> dict[str, dict[str, str]]:
    """Each request's status by route: its own, the list, the order's history."""
    listed = client.get("/resends", params={"order": ORDER}, headers=AUTH).json()["items"]
    history = client.get(f"/orders/{ORDER}/resends", headers=AUTH).json()["requests"]
    return {
        request_id: {
            "read": client.get(f"/resends/{request_id}", headers=AUTH).json()["status"],
            "list": next(item["status"] for item in listed if item["id"] == request_id),
            "order": next(item["status"] for item in history if item["id"] == request_id),
        }
        for request_id in request_ids
    }


def cli_states(request_id: str) -> dict[str, str]:
    run = in_process_cli()
    listed = json_out(run("list", "--order", ORDER, "--json"))
    history = json_out(run("history", ORDER, "--json"))
    return {
        "status": json_out(run("status", request_id, "--json"))["status"],
        "list": next(item["status"] for item in listed if item["id"] == request_id),
        "history": next(item["status"] for item in history if item["id"] == request_id),
    }


def test_a_request_behind_another_is_deferred_everywhere(
    client: TestClient, signed: Signer, web_env: dict[str, str]
) -> None:
    """Given two requests of one order and no worker, the second waits for its turn: every
    interface says `deferred`, with the reason, and a webhook merged into it says so too."""
    first = enqueue_resend(ORDER, new_etid="E000001")
    second = enqueue_resend(ORDER, new_etid="E000002")

    assert rest_states(client, first, second) == {
        first: dict.fromkeys(("read", "list", "order"), "queued"),
        second: dict.fromkeys(("read", "list", "order"), "deferred"),
    }
    assert cli_states(second) == dict.fromkeys(("status", "list", "history"), "deferred")
    assert cli_states(first) == dict.fromkeys(("status", "list", "history"), "queued")
    waiting = json_out(in_process_cli()("list", "--status", "deferred", "--json"))
    assert [item["id"] for item in waiting] == [second]
    assert "earlier request" in client.get(f"/resends/{second}", headers=AUTH).json()["reason"]

    body = json.dumps({"referenceOrderID": ORDER, "newEtid": "E000002"}).encode()
    merged = client.post("/webhooks/resends", content=body, headers=signed(body)).json()
    assert merged["coalesced"] is True and merged["id"] == second
    assert merged["status"] == "deferred"

    with TestClient(create_app(), follow_redirects=False) as console:
        sign_in(console)
        confirm = console.get(f"/console/requests/{second}/cancel")
        assert "now <strong>deferred</strong>" in confirm.text


def test_a_call_under_way_is_in_flight_everywhere_and_for_cancel(
    client: TestClient, redis_client: redis.Redis, web_env: dict[str, str]
) -> None:
    """Given a request whose call to Tango is under way, status, list, history and the REST
    API all say `in_flight`, which is what a cancel answers; after the call it is itself."""
    request_id = enqueue_resend(ORDER)
    record_key = current_runtime().keys.record(request_id)
    redis_client.hset(record_key, "calling_until", str(time.time() + 60))

    assert cli_states(request_id) == dict.fromkeys(("status", "list", "history"), "in_flight")
    assert rest_states(client, request_id)[request_id] == dict.fromkeys(
        ("read", "list", "order"), "in_flight"
    )
    assert cancel_resend(request_id) == "in_flight"
    with TestClient(create_app(), follow_redirects=False) as console:
        sign_in(console)
        page = console.get(f"/console/requests/{request_id}")
        assert 'data-status="in_flight"' in page.text
        assert "Cancel this request" not in page.text, "too late: no cancel offered"

    redis_client.hset(record_key, "calling_until", str(time.time() - 1))  # the call ended
    assert cli_states(request_id)["status"] == "queued"


def test_the_console_opens_a_request_by_a_prefix_of_its_id(
    client: TestClient, web_env: dict[str, str]
) -> None:
    request_id = enqueue_resend(ORDER)
    with TestClient(create_app(), follow_redirects=False) as console:
        sign_in(console)
        answer = console.get(f"/console/requests/{request_id[:8]}")
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/console/requests/{request_id}"
        assert console.get("/console/requests/ffffffff0000").status_code == 404


def test_the_queued_banner_does_not_promise_to_follow_a_sent_request(
    client: TestClient, web_env: dict[str, str]
) -> None:
    request_id = enqueue_resend(ORDER)
    assert cancel_resend(request_id) == "cancelled"
    with TestClient(create_app(), follow_redirects=False) as console:
        sign_in(console)
        page = console.get(f"/console/requests/{request_id}?created=1").text
        assert "Resend queued." in page and "follow" not in page.lower()
        assert csrf_of(page)


def test_the_rest_list_filters_on_the_state_it_shows(
    client: TestClient, web_env: dict[str, str]
) -> None:
    first = enqueue_resend(ORDER, new_etid="E000001")
    second = enqueue_resend(ORDER, new_etid="E000002")
    deferred = client.get("/resends", params={"status": "deferred"}, headers=AUTH).json()
    queued = client.get("/resends", params={"status": "queued"}, headers=AUTH).json()
    assert [item["id"] for item in deferred["items"]] == [second]
    assert [item["id"] for item in queued["items"]] == [first]


def test_a_new_request_behind_another_is_answered_deferred(
    client: TestClient, signed: Signer, web_env: dict[str, str]
) -> None:
    """The 202 names a new request's state as everything else then does."""
    first = json.dumps({"referenceOrderID": ORDER, "newEtid": "E000001"}).encode()
    second = json.dumps({"referenceOrderID": ORDER, "newEtid": "E000002"}).encode()
    assert (
        client.post("/webhooks/resends", content=first, headers=signed(first)).json()["status"]
        == "queued"
    )
    behind = client.post("/webhooks/resends", content=second, headers=signed(second)).json()
    assert behind["status"] == "deferred"
    assert client.get(f"/resends/{behind['id']}", headers=AUTH).json()["status"] == "deferred"
    by_api = client.post(
        "/resends", json={"referenceOrderID": ORDER, "newEtid": "E000003"}, headers=AUTH
    ).json()
    assert by_api["status"] == "deferred"
