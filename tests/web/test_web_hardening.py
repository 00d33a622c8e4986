"""The web app hardened, in-process against the real test Redis: the global cap on guessing,
keyed session digests and the idle timeout, masked free text in the console's lists, query
parameters and redirects the console accepts, JSON-only bodies, /docs, /healthz, HSTS and
the REST API's longest idempotency key. The same app as a live process:
tests/web/test_web_hardening_live.py."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.receiver import API_TOKEN
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from tests.web.test_console import ORDER, csrf_of, sign_in
from worker import enqueue_resend, get_resend
from worker.runtime import current_runtime
from worker.state.records import PROMOTE_MARGIN_SECONDS, ResendStatus
from worker.web.app import create_app

WRONG = {"Authorization": "Bearer wrong-token-Gx81-hardening-tests-0123456789"}
RIGHT = {"Authorization": f"Bearer {API_TOKEN}"}
VICTIM = "pat.victim@example.com"


def app_with(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Any:
    apply_settings(settings, monkeypatch.setenv)
    return create_app()


def client_at(app: Any, address: str, **options: Any) -> TestClient:
    return TestClient(app, client=(address, 50000), follow_redirects=False, **options)


# --- 3: the global cap, keyed digests ---------------------------------------------------------


def test_guessing_from_many_addresses_meets_the_global_cap_but_known_clients_go_on(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given AUTH_FAILURES_PER_MINUTE=5, When wrong bearer tokens come from 10 addresses
    (one each: no per-client wait ever starts), Then past the fifth failure every new
    address gets 429, while a service whose token was valid before goes on."""
    app = app_with(monkeypatch, AUTH_FAILURES_PER_MINUTE="5")
    service = client_at(app, "192.0.2.200")
    assert service.get("/resends", headers=RIGHT).status_code == 200

    statuses = [
        client_at(app, f"203.0.113.{n}").get("/resends", headers=WRONG).status_code
        for n in range(10)
    ]

    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 5, statuses
    assert client_at(app, "203.0.113.77").get("/resends", headers=RIGHT).status_code == 429
    assert service.get("/resends", headers=RIGHT).status_code == 200


def test_redis_keeps_only_keyed_digests_of_cookies_and_tokens(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    """Given a session, Then no key or value in Redis is the plain SHA-256 of the cookie or of
    the token (what a dump would let anyone test guesses against), and the same token under
    another CONSOLE_SESSION_SECRET gives another digest (the key is the server's)."""
    first = client_at(app_with(monkeypatch), "192.0.2.1")
    sign_in(first)
    cookie = first.cookies["tango_resend_console"]
    plain = {
        hashlib.sha256(cookie.encode()).hexdigest(),
        hashlib.sha256(API_TOKEN.encode()).hexdigest(),
        hashlib.sha256(b"console-session-token:" + API_TOKEN.encode()).hexdigest(),
    }
    stored = _session_hashes(redis_client)
    assert len(stored) == 1
    key, fields = stored[0]
    assert not any(digest in key for digest in plain) and not plain & set(fields.values())

    other = client_at(
        app_with(monkeypatch, CONSOLE_SESSION_SECRET="another-session-secret-Qk2-0123456789"),
        "192.0.2.2",
    )
    sign_in(other)
    tokens = {fields["token"] for _, fields in _session_hashes(redis_client)}
    assert len(tokens) == 2


def _session_hashes(client: redis.Redis) -> list[tuple[str, dict[str, str]]]:
    return [(key, client.hgetall(key)) for key in client.scan_iter("*:console:session:*")]


def test_a_console_session_ends_when_idle_and_refreshing_does_not_keep_it(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given CONSOLE_IDLE_TIMEOUT_SECONDS=1, When only the fleet page's own refresh asks,
    Then the session ends (401) within seconds, and the next page asks to sign in."""
    console = client_at(app_with(monkeypatch, CONSOLE_IDLE_TIMEOUT_SECONDS="1"), "192.0.2.3")
    sign_in(console)
    assert console.get("/console").status_code == 200

    wait_for(lambda: console.get("/console/fleet/live").status_code == 401, timeout=10)
    assert console.get("/console").status_code == 303


# --- 4: free text in lists --------------------------------------------------------------------


def test_tangos_message_is_masked_in_the_order_history_and_the_fleet_list(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a request failed with Tango's message naming a recipient, Then the order's
    history and the fleet's recent failures show it masked, never in clear."""
    console = client_at(app_with(monkeypatch), "192.0.2.4")
    sign_in(console)
    request_id = enqueue_resend(ORDER)
    record = get_resend(request_id)
    assert record is not None
    reason = f"Tango refused: {VICTIM} is not deliverable to +14155550177"
    failed = record.model_copy(update={"status": ResendStatus.FAILED, "reason": reason})
    assert current_runtime().records.finish(failed, PROMOTE_MARGIN_SECONDS)

    history = console.get(f"/console/orders/{ORDER}").text
    fleet = console.get("/console/fleet").text

    for page in (history, fleet):
        assert "p***@example.com is not deliverable to +1******0177" in page
        assert VICTIM not in page and "+14155550177" not in page


# --- 8, 11: what the console takes from a URL ---------------------------------------------------


def test_the_request_page_says_only_its_own_words_whatever_the_query(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    console = client_at(app_with(monkeypatch), "192.0.2.5")
    sign_in(console)
    request_id = enqueue_resend(ORDER)
    injected = "hacked. Call support at +1-555-0100"

    page = console.get(
        f"/console/requests/{request_id}",
        params={"cancel": injected, "retry_of": "<b>x</b>then-text", "created": "yes"},
    ).text
    known = console.get(f"/console/requests/{request_id}", params={"cancel": "sent"}).text

    assert "hacked" not in page and "then-text" not in page and "Resend queued" not in page
    assert "Not cancelled: the request is already sent." in known
    search = console.get("/console/search", params={"q": injected})
    assert search.status_code == 404 and "No order or request matches your search" in search.text
    assert (
        "No order or request matches &#39;abc1234&#39;"
        in console.get("/console/search", params={"q": "abc1234"}).text
    )


@pytest.mark.parametrize(
    "target",
    ["/console/../metrics", "/console/%2e%2e/metrics", "/console/./../docs", "//evil.example/x"],
)
def test_sign_in_never_sends_a_browser_out_of_the_console(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    console = client_at(app_with(monkeypatch), "192.0.2.6")
    form = console.get("/console/signin")

    answer = console.post(
        "/console/signin", data={"csrf": csrf_of(form.text), "token": API_TOKEN, "next": target}
    )

    assert answer.status_code == 303 and answer.headers["location"] == "/console"


def test_sign_in_keeps_a_console_page_and_its_query(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    console = client_at(app_with(monkeypatch), "192.0.2.7")
    form = console.get("/console/signin")
    target = "/console/search?q=RA251125-3001-01"

    answer = console.post(
        "/console/signin", data={"csrf": csrf_of(form.text), "token": API_TOKEN, "next": target}
    )

    assert answer.headers["location"] == target


# --- 12: JSON only ---------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_declared_json_queues_nothing(
    web_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
    content_type: str | None,
) -> None:
    """Given unsigned webhooks allowed (a developer's receiver), When a cross-site form posts
    a resend as text/plain (or without a type), Then 415 and nothing is stored; the REST API
    answers the same."""
    monkeypatch.delenv("WEBHOOK_SECRET")
    app = app_with(monkeypatch, WEBHOOK_ALLOW_UNSIGNED="true")
    client = client_at(app, "192.0.2.8")
    body = json.dumps({"referenceOrderID": ORDER}).encode()
    headers = {"content-type": content_type} if content_type else {}

    webhook = client.post("/webhooks/resends", content=body, headers=headers)
    api = client.post("/resends", content=body, headers={**headers, **RIGHT})

    assert webhook.status_code == api.status_code == 415
    assert webhook.json()["error"] == "unsupported_media_type"
    assert not list(redis_client.scan_iter("*:request:*"))
    json_type = {"content-type": "application/json; charset=utf-8"}
    assert client.post("/webhooks/resends", content=body, headers=json_type).status_code == 202


# --- 9, 10, 13, 15 ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_nothing_from_another_origin(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    """/docs and /redoc name only files of this origin (each served), and their policy lets
    no other origin's script run; WEB_DOCS=false turns them off, /openapi.json stays."""
    client = client_at(app_with(monkeypatch), "192.0.2.9")

    answer = client.get(page)

    assert answer.status_code == 200
    assert "script-src 'self' 'unsafe-inline'" in answer.headers["content-security-policy"]
    loaded = re.findall(r'(?:src|href)=["\']?([^"\' >]+)', answer.text)
    assert loaded and all(url.startswith("/docs/assets/") for url in loaded), loaded
    assert "cdn.jsdelivr.net" not in answer.text and "fonts.googleapis" not in answer.text
    for url in loaded:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    off = client_at(app_with(monkeypatch, WEB_DOCS="false"), "192.0.2.9")
    assert off.get(page).status_code == 404 and off.get("/openapi.json").status_code == 200


def test_healthz_names_no_url_and_no_error_text_of_the_token_endpoint(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    client = client_at(app_with(monkeypatch), "192.0.2.10")
    failure = {
        "error": "HTTP 401: invalid_client for client cb-42",
        "status": 401,
        "url": "https://auth.internal.example/oauth/token",
        "failures": 3,
        "since": "2026-12-05T00:00:00+00:00",
    }
    redis_client.set(current_runtime().keys.oauth_last_failure, json.dumps(failure))

    health = client.get("/healthz").json()

    assert health["status"] == "degraded"
    text = json.dumps(health)
    assert "auth.internal.example" not in text and "invalid_client" not in text
    assert "OAuth token endpoint is failing (3 failed fetches" in text


def test_hsts_is_sent_over_https_only(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HSTS on answers to HTTPS requests (a trusted proxy's X-Forwarded-Proto counts),
    never over plain HTTP, and never when WEB_HSTS_SECONDS=0."""
    app = app_with(monkeypatch, CONSOLE_TRUST_PROXY="true", WEB_HSTS_SECONDS="600")
    client = client_at(app, "192.0.2.11")
    https = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    plain = client.get("/healthz")
    assert https.headers["strict-transport-security"] == "max-age=600"
    assert "strict-transport-security" not in plain.headers

    untrusted = client_at(app_with(monkeypatch, CONSOLE_TRUST_PROXY="false"), "192.0.2.11")
    spoofed = untrusted.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in spoofed.headers
    off = client_at(app_with(monkeypatch, WEB_HSTS_SECONDS="0"), "192.0.2.11", base_url="https://x")
    assert "strict-transport-security" not in off.get("/healthz").headers


def test_an_idempotency_key_of_255_characters_is_accepted(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_at(app_with(monkeypatch), "192.0.2.12")
    body = {"referenceOrderID": ORDER}

    first = client.post("/resends", json={**body, "idempotencyKey": "k" * 255}, headers=RIGHT)
    again = client.post("/resends", json={**body, "idempotencyKey": "k" * 255}, headers=RIGHT)
    longer = client.post("/resends", json={**body, "idempotencyKey": "k" * 256}, headers=RIGHT)

    assert first.status_code == again.status_code == 202, first.text
    assert again.json()["duplicate"] and again.json()["id"] == first.json()["id"]
    assert longer.status_code == 422 and "idempotencyKey" in longer.json()["fields"]


def test_ids_of_another_shape_are_404_before_any_lookup(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_at(app_with(monkeypatch), "192.0.2.13")
    for method, path in (
        ("get", "/resends/x%0Ay"),
        ("post", "/resends/x%0Ay/cancel"),
        ("post", "/resends/x%0Ay/retry"),
    ):
        answer = client.request(method, path, headers=RIGHT)
        assert answer.status_code == 404 and answer.json()["error"] == "not_found", path
