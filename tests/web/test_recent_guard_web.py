"""The recent-resend guard and the audit trail through the web app in-process (REST API,
webhook, console, /metrics), against the real test Redis, with named tokens (API_TOKENS)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.receiver import API_TOKEN, Signer
from tests.support.settings import apply_settings
from tests.web.test_console import csrf_of, sign_in
from worker import get_resend
from worker.runtime import current_runtime
from worker.state.records import PROMOTE_MARGIN_SECONDS, ResendStatus
from worker.web.app import create_app

ALICE = "alice-token-7hQ2-recent-guard-tests-000001"
DASH = "dashboard-token-p4Kx-recent-guard-tests-01"
ORDER = "RA251206-7001-01"
WRITE = {"Authorization": f"Bearer {API_TOKEN}"}
AS_ALICE = {"Authorization": f"Bearer {ALICE}"}
AS_DASH = {"Authorization": f"Bearer {DASH}"}


@pytest.fixture
def app(web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    apply_settings(
        {"RESEND_RECENT_SECONDS": "600", "API_TOKENS": f"alice:{ALICE}:write, dash:{DASH}:read"},
        monkeypatch.setenv,
    )
    return TestClient(create_app(), follow_redirects=False)


def mark_sent(request_id: str, minutes_ago: float = 0) -> None:
    """The request as a worker leaves it after Tango's 201 (`minutes_ago` by Redis's clock)."""
    runtime = current_runtime()
    record = get_resend(request_id)
    assert record is not None
    sent_at = runtime.clock.now() - timedelta(minutes=minutes_ago)
    final = record.model_copy(update={"status": ResendStatus.SENT, "sent_at": sent_at})
    assert runtime.records.finish(final, PROMOTE_MARGIN_SECONDS)


def post(app: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = app.post("/resends", json={"referenceOrderID": ORDER, **body}, headers=headers)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_rest_a_second_ask_names_the_earlier_request_and_force_sends_anyway(
    app: TestClient,
) -> None:
    first = post(app, AS_ALICE, newEmail="pat@example.com")
    mark_sent(first["id"])

    again = post(app, WRITE, newEmail="pat@example.com")
    assert again == {
        "id": first["id"],
        "status": "sent",
        "duplicate": True,
        "coalesced": False,
        "recent": True,
    }
    other = post(app, WRITE, newEmail="sam@example.com")
    assert other["id"] != first["id"] and other["recent"] is False

    forced = post(app, AS_ALICE, newEmail="pat@example.com", force=True)
    # Behind `other`, still pending for the same order: deferred, as every interface shows it.
    assert forced["id"] != first["id"] and forced["status"] == "deferred"
    record = get_resend(forced["id"])
    assert record is not None and record.forced and record.origin == "api alice"
    bad = app.post("/resends", json={"referenceOrderID": ORDER, "force": "yes"}, headers=WRITE)
    assert bad.status_code == 422 and "force" in bad.json()["fields"]


def test_rest_records_the_token_name_on_creates_cancels_and_retries(app: TestClient) -> None:
    by_default = post(app, WRITE)
    by_alice = post(app, AS_ALICE, newEmail="pat@example.com")
    assert get_resend(by_default["id"]).origin == "api default"  # type: ignore[union-attr]

    cancelled = app.post(f"/resends/{by_alice['id']}/cancel", headers=AS_ALICE)
    assert cancelled.status_code == 200
    shown = app.get(f"/resends/{by_alice['id']}", headers=AS_DASH).json()
    assert shown["origin"] == "api alice"
    assert shown["cancelled_by"] == "api alice" and shown["cancelled_at"]

    failed = get_resend(by_default["id"])
    assert failed is not None
    current_runtime().records.finish(
        failed.model_copy(update={"status": ResendStatus.FAILED}), PROMOTE_MARGIN_SECONDS
    )
    retried = app.post(f"/resends/{by_default['id']}/retry", headers=AS_ALICE)
    assert retried.status_code == 202, retried.text
    retry = app.get(f"/resends/{retried.json()['id']}", headers=AS_DASH).json()
    assert retry["origin"] == f"retry of {by_default['id']}"
    assert retry["requested_by"] == "api alice"


def test_a_read_token_of_api_tokens_reads_and_may_not_act(app: TestClient) -> None:
    assert app.get("/resends", headers=AS_DASH).status_code == 200
    refused = app.post("/resends", json={"referenceOrderID": ORDER}, headers=AS_DASH)
    assert refused.status_code == 403
    wrong = app.get("/resends", headers={"Authorization": f"Bearer {ALICE}x"})
    assert wrong.status_code == 401


def test_two_webhooks_with_different_ids_send_once(app: TestClient, signed: Signer) -> None:
    body = json.dumps({"referenceOrderID": ORDER}).encode()
    first = app.post("/webhooks/resends", content=body, headers=signed(body, webhook_id="msg_a"))
    assert first.status_code == 202
    mark_sent(first.json()["id"])

    second = app.post("/webhooks/resends", content=body, headers=signed(body, webhook_id="msg_b"))
    assert second.status_code == 202
    assert second.json() == {
        "id": first.json()["id"],
        "status": "sent",
        "duplicate": True,
        "coalesced": False,
        "recent": True,
    }
    record = get_resend(first.json()["id"])
    assert record is not None and record.origin == "webhook msg_a"
    metrics = app.get("/metrics").text
    assert 'tango_resend_requests_total{outcome="recent"} 1.0' in metrics


def test_the_console_warns_and_send_anyway_needs_a_second_confirmation(
    app: TestClient, redis_client: redis.Redis
) -> None:
    sign_in(app, ALICE)
    home = app.get("/console")
    assert "Signed in as <strong>alice</strong>" in home.text
    csrf = csrf_of(home.text)
    form = {"csrf": csrf, "referenceOrderID": ORDER, "newEmail": "pat@example.com"}

    first = app.post("/console/resends", data=form)
    assert first.status_code == 303
    first_id = first.headers["location"].split("/")[-1].split("?")[0]
    mark_sent(first_id, minutes_ago=3)
    order_page = app.get(f"/console/orders/{ORDER}")
    assert "last resent 3 min ago to p***@example.com" in order_page.text
    assert "console alice" in order_page.text

    # Submit, Back, submit: the second is not sent, and the page names the first.
    again = app.post("/console/resends", data=form)
    assert again.status_code == 409
    assert first_id in again.text and "last resent 3 min ago to p***@example.com" in again.text
    assert len(current_runtime().records.ids_for_order(ORDER)) == 1

    # "Send anyway" asks again; only the explicit confirmation sends.
    asked = app.post("/console/resends", data={**form, "force": "1"})
    assert asked.status_code == 200 and "Yes, send it again" in asked.text
    assert len(current_runtime().records.ids_for_order(ORDER)) == 1
    confirmed = app.post("/console/resends", data={**form, "force": "1", "confirmed": "1"})
    assert confirmed.status_code == 303
    forced_id = confirmed.headers["location"].split("/")[-1].split("?")[0]
    record = get_resend(forced_id)
    assert record is not None and record.forced and record.origin == "console alice"
    page = app.get(f"/console/requests/{forced_id}")
    assert re.search(r'id="origin">console alice[^<]*sent anyway', page.text)


def test_the_console_shows_a_resend_within_a_day_with_the_guard_off(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = TestClient(create_app(), follow_redirects=False)
    sign_in(app)
    first = post(app, WRITE, newMobile="+14155550123")
    mark_sent(first["id"], minutes_ago=120)
    assert "last resent 2 h ago to +1******0123" in app.get(f"/console/orders/{ORDER}").text
    assert "Signed in as <strong>default</strong>" in app.get("/console").text
    again = post(app, WRITE, newMobile="+14155550123")
    assert again["id"] != first["id"] and again["recent"] is False, "the guard is off"


def test_an_older_resend_is_not_shown(app: TestClient) -> None:
    sign_in(app, ALICE)
    first = post(app, WRITE)
    mark_sent(first["id"], minutes_ago=25 * 60)
    assert "last resent" not in app.get(f"/console/orders/{ORDER}").text


def test_rest_a_retry_of_an_order_just_sent_names_that_send_unless_forced(
    app: TestClient,
) -> None:
    failed = post(app, WRITE)
    record = get_resend(failed["id"])
    assert record is not None
    current_runtime().records.finish(
        record.model_copy(update={"status": ResendStatus.FAILED}), PROMOTE_MARGIN_SECONDS
    )
    sent = post(app, WRITE)
    mark_sent(sent["id"])

    answer = app.post(f"/resends/{failed['id']}/retry", headers=AS_ALICE)
    assert answer.status_code == 202
    assert answer.json() == {"id": sent["id"], "retry_of": failed["id"], "recent": True}
    forced = app.post(f"/resends/{failed['id']}/retry?force=true", headers=AS_ALICE)
    assert forced.status_code == 202 and forced.json()["recent"] is False
    retry = get_resend(forced.json()["id"])
    assert retry is not None and retry.retry_of == failed["id"] and retry.forced


def test_send_anyway_on_an_order_not_resent_lately_just_sends(app: TestClient) -> None:
    sign_in(app, ALICE)
    csrf = csrf_of(app.get("/console").text)
    answer = app.post(
        "/console/resends", data={"csrf": csrf, "referenceOrderID": ORDER, "force": "1"}
    )
    assert answer.status_code == 303
    record = get_resend(answer.headers["location"].split("/")[-1].split("?")[0])
    assert record is not None and not record.forced and record.origin == "console alice"


def test_a_console_retry_of_an_order_just_sent_shows_that_send(app: TestClient) -> None:
    failed = post(app, WRITE)
    record = get_resend(failed["id"])
    assert record is not None
    current_runtime().records.finish(
        record.model_copy(update={"status": ResendStatus.FAILED}), PROMOTE_MARGIN_SECONDS
    )
    sent = post(app, WRITE)
    mark_sent(sent["id"])
    sign_in(app, ALICE)
    confirm = app.get(f"/console/requests/{failed['id']}/retry")
    answer = app.post(
        f"/console/requests/{failed['id']}/retry", data={"csrf": csrf_of(confirm.text)}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/requests/{sent['id']}?recent=1"
    page = app.get(answer.headers["location"])
    assert "already sent to the same recipient" in page.text


def test_a_console_cancel_records_the_agent_and_the_page_shows_it(app: TestClient) -> None:
    sign_in(app, ALICE)
    request_id = post(app, WRITE)["id"]
    confirm = app.get(f"/console/requests/{request_id}/cancel")
    done = app.post(f"/console/requests/{request_id}/cancel", data={"csrf": csrf_of(confirm.text)})
    assert done.status_code == 303
    record = get_resend(request_id)
    assert record is not None and record.cancelled_by == "console alice"
    page = app.get(f"/console/requests/{request_id}").text
    assert re.search(r'id="cancelled-by">[^<]*Z by <span class="mono">console alice', page)
    assert "api default" in page
