"""`duplicate` means a redelivery of the same webhook-id; `coalesced` a new webhook merged into
an identical pending request of the order. One flag, one meaning."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.receiver import Signer, webhook_body

ROUTE = "/webhooks/resends"


def test_a_new_webhook_identical_to_a_pending_request_is_coalesced_not_duplicate(
    client: TestClient, signed: Signer
) -> None:
    body = webhook_body(newEmail="pat@example.com")
    first = client.post(ROUTE, content=body, headers=signed(body, webhook_id="msg_first"))
    other = client.post(ROUTE, content=body, headers=signed(body, webhook_id="msg_other"))
    redelivered = client.post(ROUTE, content=body, headers=signed(body, webhook_id="msg_other"))

    assert first.status_code == other.status_code == redelivered.status_code == 202
    assert first.json() == {
        "id": first.json()["id"],
        "status": "queued",
        "duplicate": False,
        "coalesced": False,
        "recent": False,
    }
    assert other.json()["id"] == first.json()["id"]
    assert other.json()["duplicate"] is False and other.json()["coalesced"] is True
    assert redelivered.json()["id"] == first.json()["id"]
    assert redelivered.json()["duplicate"] is True and redelivered.json()["coalesced"] is False


def test_the_schema_documents_both_flags(client: TestClient) -> None:
    accepted = client.get("/openapi.json").json()["components"]["schemas"]["Accepted"]
    assert {"duplicate", "coalesced"} <= set(accepted["properties"])
    assert "redelivery" in accepted["properties"]["duplicate"]["description"]
