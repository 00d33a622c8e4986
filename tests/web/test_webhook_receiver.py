"""POST /webhooks/resends: signatures, idempotency, every refusal, and what gets stored."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.receiver import (
    API_TOKEN,
    OTHER_SECRET,
    WEBHOOK_ORDER,
    WEBHOOK_SECRET,
    Signer,
    webhook_body,
)
from tests.support.redis_db import unreachable_redis_url
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from worker import cancel_resend, get_resend
from worker.core.settings import ConfigurationError, reset_settings_cache
from worker.state.keys import RedisKeys
from worker.web.app import create_app
from worker.web.webhook_signature import REPLAY_WINDOW_SECONDS, sign

ROUTE = "/webhooks/resends"
JSON = {"content-type": "application/json"}


def stored_keys(redis_client: redis.Redis) -> set[str]:
    return {key for key in redis_client.keys("*") if not key.startswith("_kombu")}


def test_a_signed_webhook_is_queued(client: TestClient, signed: Signer) -> None:
    body = webhook_body(newEmail="pat@example.com", newEtid="E000123")
    response = client.post(ROUTE, content=body, headers=signed(body))

    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "queued" and answer["duplicate"] is False
    record = get_resend(answer["id"])
    assert record is not None and record.status.value == "queued"
    assert record.request == {"newEmail": "pat@example.com", "newEtid": "E000123"}


def test_a_redelivered_webhook_returns_the_same_id_and_queues_nothing_new(
    client: TestClient, signed: Signer, redis_client: redis.Redis
) -> None:
    body = webhook_body()
    headers = signed(body, webhook_id="msg_redelivered")
    first = client.post(ROUTE, content=body, headers=headers)
    keys_after_first = stored_keys(redis_client)
    again = client.post(ROUTE, content=body, headers=signed(body, webhook_id="msg_redelivered"))

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"] is True
    assert stored_keys(redis_client) == keys_after_first


def test_rotation_accepts_any_one_valid_signature_among_several(
    client: TestClient, signed: Signer
) -> None:
    body = webhook_body()
    headers = signed(body, secret=OTHER_SECRET)
    good = sign(WEBHOOK_SECRET, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    headers["webhook-signature"] = f"{headers['webhook-signature']} {good}"
    assert client.post(ROUTE, content=body, headers=headers).status_code == 202


# A spoiler turns a well-signed webhook (body, headers) into a badly signed one.
Spoiler = Callable[[Signer, bytes, dict[str, str]], tuple[bytes, dict[str, str]]]


def without(header: str) -> Spoiler:
    return lambda signed, body, headers: (body, {k: v for k, v in headers.items() if k != header})


def replacing(header: str, value: str) -> Spoiler:
    return lambda signed, body, headers: (body, {**headers, header: value})


def signed_at(offset_seconds: int) -> Spoiler:
    return lambda signed, body, headers: (
        body,
        signed(body, timestamp=int(time.time()) + offset_seconds),
    )


SPOILERS: dict[str, Spoiler] = {
    "wrong key": lambda signed, body, headers: (body, signed(body, secret=OTHER_SECRET)),
    "missing signature": without("webhook-signature"),
    "missing id": without("webhook-id"),
    "missing timestamp": without("webhook-timestamp"),
    "stale": signed_at(-6 * 60),
    "from the future": signed_at(6 * 60),
    "tampered body": lambda signed, body, headers: (
        webhook_body(newEmail="attacker@example.com"),
        headers,
    ),
    "tampered id": replacing("webhook-id", "msg_other"),
    "garbage signature": replacing("webhook-signature", "v1,@@@not-base64@@@"),
    "signature without version": replacing("webhook-signature", "nocomma"),
    "non-numeric timestamp": replacing("webhook-timestamp", "yesterday"),
}


@pytest.mark.parametrize("spoil", list(SPOILERS))
def test_bad_signatures_are_refused_with_401_and_store_nothing(
    client: TestClient, signed: Signer, redis_client: redis.Redis, spoil: str
) -> None:
    body = webhook_body()
    sent, headers = SPOILERS[spoil](signed, body, signed(body))
    before = stored_keys(redis_client)

    response = client.post(ROUTE, content=sent, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert stored_keys(redis_client) == before


def test_signature_is_checked_before_the_body_is_parsed(client: TestClient) -> None:
    response = client.post(ROUTE, content=b"{not json", headers={"webhook-id": "x", **JSON})
    assert response.status_code == 401


def test_malformed_json_is_400(client: TestClient, signed: Signer) -> None:
    body = b'{"referenceOrderID": '
    response = client.post(ROUTE, content=body, headers=signed(body))
    assert response.status_code == 400 and response.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    "body",
    [
        f'{{"referenceOrderID": "{WEBHOOK_ORDER}", "referenceOrderID": "RA251125-1101-02"}}',
        f'{{"referenceOrderID": "{WEBHOOK_ORDER}", "newEmail": "pat@example.com", '
        '"newEmail": "eve@example.com"}',
        f'{{"referenceOrderID": "{WEBHOOK_ORDER}", "newEtid": "E000001", "newEtid": "E000001"}}',
        f'{{"referenceOrderID": "{WEBHOOK_ORDER}", "extra": {{"a": 1, "a": 2}}}}',
    ],
    ids=["order", "email", "same value twice", "nested"],
)
def test_a_body_naming_a_key_twice_is_400_and_stores_nothing(
    client: TestClient, signed: Signer, redis_client: redis.Redis, body: str
) -> None:
    """Given a signed body with a repeated key (parsers disagree on which one wins, so the
    sender and we could read different requests), it is refused before anything is stored."""
    before = stored_keys(redis_client)
    raw = body.encode()

    response = client.post(ROUTE, content=raw, headers=signed(raw))

    assert response.status_code == 400
    problem = response.json()
    assert problem["error"] == "malformed_json" and "twice" in problem["message"]
    assert "example.com" not in response.text and "newEmail" not in response.text
    assert stored_keys(redis_client) == before


def redis_seconds(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def test_a_replay_after_the_idempotency_ttl_is_still_the_same_request(
    web_env: dict[str, str],
    signed: Signer,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given RESEND_IDEMPOTENCY_TTL_SECONDS=1, a signed webhook replayed 2 s later (its
    signature still valid) answers the first id and queues nothing: a webhook-id is kept as
    long as its signature can be accepted (REPLAY_WINDOW_SECONDS), whatever that TTL says."""
    apply_settings({"RESEND_IDEMPOTENCY_TTL_SECONDS": "1"}, monkeypatch.setenv)
    body = webhook_body(newEtid="E000321")
    headers = signed(body, webhook_id="msg_captured")
    queue = web_env["RESEND_QUEUE"]
    with TestClient(create_app()) as client:
        first = client.post(ROUTE, content=body, headers=headers)
        first_id = first.json()["id"]
        # Final, so the replay cannot coalesce into it as a pending identical request.
        assert cancel_resend(first_id) == "cancelled"
        keys_before, queued_before = stored_keys(redis_client), redis_client.llen(queue)
        key = RedisKeys(web_env["REDIS_KEY_PREFIX"]).idempotency("webhook:msg_captured")
        assert redis_client.ttl(key) >= REPLAY_WINDOW_SECONDS - 5

        started = redis_seconds(redis_client)
        wait_for(
            lambda: redis_seconds(redis_client) >= started + 2.0,
            timeout=10,
            what="2 s on Redis's clock",
        )
        replay = client.post(ROUTE, content=body, headers=headers)

    assert first.status_code == replay.status_code == 202
    assert replay.json()["id"] == first_id and replay.json()["duplicate"] is True
    assert stored_keys(redis_client) == keys_before
    assert redis_client.llen(queue) == queued_before


def test_invalid_fields_are_422_naming_each(
    client: TestClient, signed: Signer, redis_client: redis.Redis
) -> None:
    body = webhook_body(
        referenceOrderID="RA251125-1101-01/../x",
        newEmail="nope",
        newDeliveryMethod="FAX",
        surprise=1,
    )
    before = stored_keys(redis_client)
    response = client.post(ROUTE, content=body, headers=signed(body))
    assert response.status_code == 422
    fields = response.json()["fields"]
    assert set(fields) == {"referenceOrderID", "newEmail", "newDeliveryMethod", "surprise"}
    assert "nope" not in response.text
    assert stored_keys(redis_client) == before


@pytest.mark.parametrize("body", [b"[]", b'"RA251125-1101-01"', b"null", b"42"])
def test_a_body_that_is_not_an_object_is_422(
    client: TestClient, signed: Signer, body: bytes
) -> None:
    assert client.post(ROUTE, content=body, headers=signed(body)).status_code == 422


def test_an_oversized_body_is_413_from_its_declared_length(
    client: TestClient, signed: Signer
) -> None:
    body = webhook_body(padding="x" * (70 * 1024))
    response = client.post(ROUTE, content=body, headers=signed(body))
    assert response.status_code == 413


def test_an_oversized_body_without_a_length_is_cut_off(client: TestClient, signed: Signer) -> None:
    body = webhook_body(padding="x" * (70 * 1024))

    def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = client.post(ROUTE, content=chunks(), headers=signed(body))
    assert response.status_code == 413


def test_redis_down_is_503_and_nothing_is_stored(
    web_env: dict[str, str],
    signed: Signer,
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
) -> None:
    apply_settings({"REDIS_URL": unreachable_redis_url()}, monkeypatch.setenv)
    before = stored_keys(redis_client)
    with TestClient(create_app()) as dead:
        body = webhook_body()
        response = dead.post(ROUTE, content=body, headers=signed(body))
        health = dead.get("/healthz")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert health.status_code == 503
    assert stored_keys(redis_client) == before


def test_healthz(client: TestClient) -> None:
    """The tests' Redis does not evict (a Redis that does: tests/ops/test_redis_eviction.py)."""
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "redis_maxmemory_policy": "noeviction", "warnings": []}


def test_reading_a_record_needs_the_api_token(client: TestClient, signed: Signer) -> None:
    body = webhook_body()
    request_id = client.post(ROUTE, content=body, headers=signed(body)).json()["id"]

    assert client.get(f"/resends/{request_id}").status_code == 401
    assert (
        client.get(f"/resends/{request_id}", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    found = client.get(f"/resends/{request_id}", headers=auth)
    assert found.status_code == 200 and found.json()["reference_order_id"] == WEBHOOK_ORDER
    assert client.get("/resends/nope", headers=auth).status_code == 404


def test_without_api_token_the_record_route_is_off(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN")
    reset_settings_cache()
    with TestClient(create_app()) as client:
        for method, path in [
            ("GET", "/resends/anything"),
            ("POST", "/resends"),
            ("GET", "/orders/RA251125-1001-01/resends"),
            ("GET", "/console"),
            ("GET", "/console/requests/3f9a0c1b"),
        ]:
            answer = client.request(method, path, headers={"Authorization": "Bearer x"})
            assert answer.status_code == 404, (method, path)
            body = answer.json()
            assert body["error"] == "api_disabled" and "API_TOKEN" in body["message"], body
        paths = client.get("/openapi.json").json()["paths"]
        assert not any(path.startswith(("/resends", "/orders", "/console")) for path in paths)
        assert client.get("/healthz").status_code == 200, "the rest is served as before"


def test_the_receiver_refuses_to_start_without_a_secret(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET")
    reset_settings_cache()
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET"):
        create_app()


def test_unsigned_mode_must_be_explicit_and_says_so(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET")
    monkeypatch.setenv("WEBHOOK_ALLOW_UNSIGNED", "true")
    reset_settings_cache()
    with TestClient(create_app()) as client:
        response = client.post(ROUTE, content=webhook_body(), headers=JSON)
    assert response.status_code == 202
    assert "UNSIGNED" in caplog.text


def test_a_malformed_secret_names_the_variable(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "hunter2")
    reset_settings_cache()
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET") as raised:
        create_app()
    assert "hunter2" not in str(raised.value)
    assert WEBHOOK_SECRET not in str(raised.value)
