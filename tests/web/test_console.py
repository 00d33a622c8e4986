"""The support console (worker/web/console/) in-process: sign-in and its cookie, CSRF, the
throttle, read-only sessions, masking, inline validation and the fleet page. The same flows
in a real browser against a real worker: tests/integration/test_console_browser.py."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.receiver import API_TOKEN
from tests.support.settings import apply_settings
from worker import enqueue_resend, get_resend
from worker.core.settings import reset_settings_cache
from worker.runtime import current_runtime
from worker.state.records import ResendStatus
from worker.web.app import create_app

READ_TOKEN = "read-only-token-Q8w3-console-tests-0987654"
ORDER = "RA251125-3001-01"


@pytest.fixture
def console(web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    apply_settings({"API_READ_TOKEN": READ_TOKEN}, monkeypatch.setenv)
    return TestClient(create_app(), follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: TestClient, token: str = API_TOKEN, **headers: str) -> TestClient:
    form = client.get("/console/signin")
    answer = client.post(
        "/console/signin",
        data={"csrf": csrf_of(form.text), "token": token, "next": "/console"},
        headers=headers,
    )
    assert answer.status_code == 303, answer.text
    return client


def set_cookie_of(response: object, name: str) -> str:
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    line = next(header for header in headers if header.startswith(f"{name}="))
    assert isinstance(line, str)
    return line


def test_pages_need_a_session(console: TestClient) -> None:
    for path in ("/console", "/console/fleet", f"/console/orders/{ORDER}"):
        response = console.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/signin?next=")


def test_sign_in_sets_an_httponly_samesite_strict_cookie_and_sign_out_ends_it(
    console: TestClient,
) -> None:
    form = console.get("/console/signin")
    answer = console.post(
        "/console/signin", data={"csrf": csrf_of(form.text), "token": API_TOKEN, "next": "/x"}
    )

    cookie = set_cookie_of(answer, "tango_resend_console")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP, no trusted proxy
    assert answer.headers["location"] == "/console"  # `next` outside the console is ignored
    home = console.get("/console")
    assert home.status_code == 200 and "Sign out" in home.text
    assert home.headers["Content-Security-Policy"].startswith("default-src 'self'")

    signed_out = console.post("/console/signout", data={"csrf": csrf_of(home.text)})
    assert signed_out.status_code == 303
    console.cookies.set("tango_resend_console", SimpleCookie(cookie)["tango_resend_console"].value)
    assert console.get("/console").status_code == 303  # the old cookie is worth nothing now


@pytest.mark.parametrize(("trusted", "secure"), [(True, True), (False, False)])
def test_the_cookie_is_secure_behind_https_only_when_the_proxy_is_trusted(
    console: TestClient, monkeypatch: pytest.MonkeyPatch, trusted: bool, secure: bool
) -> None:
    monkeypatch.setenv("CONSOLE_TRUST_PROXY", str(trusted).lower())
    reset_settings_cache()
    client = TestClient(create_app(), follow_redirects=False)
    form = client.get("/console/signin")
    answer = client.post(
        "/console/signin",
        data={"csrf": csrf_of(form.text), "token": API_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert ("Secure" in set_cookie_of(answer, "tango_resend_console")) is secure


def test_a_wrong_token_is_refused_with_a_message_and_repeated_failures_are_slowed(
    console: TestClient,
) -> None:
    page = console.get("/console/signin")
    answers = []
    for n in range(4):
        # Each form carries a one-off CSRF token (also its cookie): a refusal renders a new one.
        page = console.post("/console/signin", data={"csrf": csrf_of(page.text), "token": f"w{n}"})
        answers.append(page)
    assert [answer.status_code for answer in answers] == [401, 401, 401, 401]
    assert "That token is not valid." in answers[0].text
    assert "wait" not in answers[2].text and "wait 1 s" in answers[3].text

    # While it must wait, even the right token is not looked at.
    right = console.post("/console/signin", data={"csrf": csrf_of(page.text), "token": API_TOKEN})
    assert right.status_code == 429 and "try again in" in right.text
    assert "tango_resend_console=" not in right.headers.get("set-cookie", "")


def test_the_throttle_counts_per_client(console: TestClient, redis_client: redis.Redis) -> None:
    page = console.get("/console/signin")
    for n in range(4):
        page = console.post("/console/signin", data={"csrf": csrf_of(page.text), "token": f"w{n}"})
    # One client is slowed, by its address; X-Forwarded-For counts only behind a trusted proxy.
    assert len(redis_client.keys("*signin-wait*")) == 1
    other = console.post(
        "/console/signin",
        data={"csrf": csrf_of(page.text), "token": API_TOKEN},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert other.status_code == 429


def test_sign_in_and_every_form_refuse_a_post_without_the_csrf_token(
    console: TestClient,
) -> None:
    console.get("/console/signin")
    refused = console.post("/console/signin", data={"token": API_TOKEN})
    assert refused.status_code == 403

    sign_in(console)
    request_id = enqueue_resend(ORDER)
    for path, data in [
        ("/console/resends", {"referenceOrderID": ORDER}),
        (f"/console/requests/{request_id}/cancel", {}),
        (f"/console/requests/{request_id}/retry", {}),
        ("/console/signout", {}),
    ]:
        for token in ({}, {"csrf": "forged"}):
            response = console.post(path, data={**data, **token})
            assert response.status_code == 403, path
            assert "CSRF" in response.text
    record = get_resend(request_id)
    assert record is not None and record.status.value == "queued"


def test_validation_errors_are_inline_with_the_apis_messages(console: TestClient) -> None:
    sign_in(console)
    csrf = csrf_of(console.get("/console").text)
    form = {"csrf": csrf, "referenceOrderID": ORDER, "newEmail": "nope", "newMobile": "+1415"}

    page = console.post("/console/resends", data=form)
    api = console.post(
        "/resends",
        json={"referenceOrderID": ORDER, "newEmail": "nope", "newMobile": "+1415"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )

    assert page.status_code == 422
    for field, message in api.json()["fields"].items():
        shown = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', page.text)
        assert shown and shown.group(1) == message.replace("'", "&#39;")
    assert re.search(r'id="newEmail"[^>]*aria-invalid="true"', page.text, re.S)
    assert 'value="nope"' in page.text  # what was typed stays


def test_resend_from_the_console_queues_and_goes_to_the_requests_live_page(
    console: TestClient,
) -> None:
    sign_in(console)
    csrf = csrf_of(console.get("/console").text)

    answer = console.post(
        "/console/resends",
        data={"csrf": csrf, "referenceOrderID": ORDER, "newEmail": "pat@example.com"},
    )

    assert answer.status_code == 303
    request_id = answer.headers["location"].split("/")[-1].split("?")[0]
    record = get_resend(request_id)
    assert record is not None and record.request == {"newEmail": "pat@example.com"}
    page = console.get(answer.headers["location"])
    assert f'data-poll="/console/requests/{request_id}/live"' in page.text
    assert '<meta http-equiv="refresh"' in page.text  # inside <noscript>: works without JS
    live = console.get(f"/console/requests/{request_id}/live")
    assert live.status_code == 200 and 'data-status="queued"' in live.text


def test_contact_data_is_masked_in_lists_and_full_on_the_requests_page(
    console: TestClient,
) -> None:
    sign_in(console)
    request_id = enqueue_resend(ORDER, new_email="pat.jones@example.com", new_mobile="+14155550188")

    history = console.get(f"/console/orders/{ORDER}")
    page = console.get(f"/console/requests/{request_id}")

    assert "pat.jones@example.com" not in history.text and "+14155550188" not in history.text
    assert "newEmail=p***@example.com" in history.text
    assert "pat.jones@example.com" in page.text and "+14155550188" in page.text


def test_search_goes_to_an_order_or_a_request_by_prefix(console: TestClient) -> None:
    sign_in(console)
    request_id = enqueue_resend(ORDER)

    by_order = console.get("/console/search", params={"q": f" {ORDER} "})
    by_prefix = console.get("/console/search", params={"q": request_id[:8]})
    nothing = console.get("/console/search", params={"q": "abc"})

    assert by_order.headers["location"] == f"/console/orders/{ORDER}"
    assert by_prefix.headers["location"] == f"/console/requests/{request_id}"
    assert nothing.status_code == 404 and "No order or request matches" in nothing.text


def test_cancel_needs_a_confirmation_then_cancels(console: TestClient) -> None:
    sign_in(console)
    request_id = enqueue_resend(ORDER)

    confirm = console.get(f"/console/requests/{request_id}/cancel")
    assert confirm.status_code == 200 and "Yes, cancel it" in confirm.text
    record = get_resend(request_id)
    assert record is not None and record.status.value == "queued"  # asking changed nothing

    done = console.post(
        f"/console/requests/{request_id}/cancel", data={"csrf": csrf_of(confirm.text)}
    )
    assert done.headers["location"] == f"/console/requests/{request_id}?cancel=cancelled"
    record = get_resend(request_id)
    assert record is not None and record.status.value == "cancelled"


def test_a_read_only_session_sees_but_cannot_act(console: TestClient) -> None:
    sign_in(console, READ_TOKEN)
    request_id = enqueue_resend(ORDER)

    home = console.get("/console")
    page = console.get(f"/console/requests/{request_id}")
    refused = console.post(
        f"/console/requests/{request_id}/cancel", data={"csrf": csrf_of(home.text)}
    )

    assert "read-only session" in home.text and "Queue resend" not in home.text
    assert page.status_code == 200 and "Cancel this request" not in page.text
    assert refused.status_code == 403
    record = get_resend(request_id)
    assert record is not None and record.status.value == "queued"


def test_the_fleet_page_shows_counts_waiting_rate_and_workers(console: TestClient) -> None:
    sign_in(console)
    enqueue_resend(ORDER)
    enqueue_resend(ORDER, new_email="pat@example.com")  # waits for its turn

    page = console.get("/console/fleet")
    fragment = console.get("/console/fleet/live")

    assert page.status_code == fragment.status_code == 200
    assert 'data-count="queued">2<' in fragment.text
    assert 'data-waiting="turn">1<' in fragment.text
    assert "No worker consumes the queue" in fragment.text
    assert 'data-poll="/console/fleet/live"' in page.text


def test_static_files_are_served_and_nothing_else(console: TestClient) -> None:
    assert console.get("/console/static/console.js").status_code == 200
    assert console.get("/console/static/console.css").headers["content-type"].startswith("text/css")
    assert console.get("/console/static/..%2Fpages.py").status_code == 404


def test_a_session_does_not_outlive_a_rotation_of_its_token(
    console: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(console)
    assert console.get("/console").status_code == 200

    monkeypatch.setenv("API_TOKEN", "rotated-token-Zk38-console-tests-0123456789")
    reset_settings_cache()
    restarted = TestClient(create_app(), follow_redirects=False, cookies=console.cookies)

    assert restarted.get("/console").status_code == 303  # back to sign-in


@pytest.mark.parametrize(
    ("confirmed_by", "shown"),
    [
        (None, "Tango's 201"),
        ("cooldown", "<code>cooldown</code>"),
        ("refusal", "<code>refusal</code>"),
    ],
)
def test_a_sent_request_says_how_it_was_known_in_the_console_and_the_rest_api(
    console: TestClient, confirmed_by: str | None, shown: str
) -> None:
    """`sent` from Tango's 201, from a probe's cooldown time, or from a probe's refusal
    (RESEND_EXCLUSIVE): the console's request page and the REST API say which."""
    sign_in(console)
    request_id = enqueue_resend(ORDER, new_etid="E000001")
    records = current_runtime().records
    record = records.get(request_id)
    assert record is not None
    record.status, record.sent_at, record.confirmed_by = (
        ResendStatus.SENT,
        record.created_at,
        confirmed_by,  # type: ignore[assignment]
    )
    assert records.finish(record, 0.1)

    live = console.get(f"/console/requests/{request_id}/live")
    assert f'data-confirmed-by="{confirmed_by or "response"}"' in live.text
    assert shown in live.text
    api = console.get(f"/resends/{request_id}", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert api.status_code == 200 and api.json()["confirmed_by"] == confirmed_by
