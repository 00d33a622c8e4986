"""The web process hardened, driven live: `python -m worker web` on a free loopback port, over
real sockets. Whom forwarded headers may name, the throttles, read deadlines and the
concurrency limit, a client hanging up mid-body, forged log lines, weak secrets refused at
start, and the public port apart from the office's (docs/security.md lists what each holds).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.support.processes import WebProcess, free_port, run_python
from tests.support.receiver import API_TOKEN, WEBHOOK_SECRET
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.settings import new_tag
from tests.support.waiting import wait_for

WRONG_TOKEN = "wrong-token-Gx81-hardening-tests-0123456789"
StartWeb = Callable[..., WebProcess]


@pytest.fixture
def start_web_live(redis_client: redis.Redis, tmp_path: Path) -> Iterator[StartWeb]:
    """start_web_live(*arguments, **settings): the web process with the tests' Redis, a
    signing secret, API_TOKEN and `settings`, ready; stopped after the test."""
    started: list[WebProcess] = []

    def start(*arguments: str, **settings: str) -> WebProcess:
        tag = new_tag()
        env = {
            "REDIS_URL": TEST_REDIS_URL,
            "REDIS_KEY_PREFIX": f"hard-{tag}",
            "RESEND_QUEUE": f"hard-{tag}",
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "API_TOKEN": API_TOKEN,
            **settings,
        }
        process = WebProcess(env, tmp_path / f"web-{len(started)}.log", arguments)
        started.append(process)
        return process.wait_ready()

    yield start
    for process in started:
        process.stop()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(web: WebProcess, token: str, headers: dict[str, str] | None = None) -> int:
    """One console sign-in with `token` (and `headers`, e.g. X-Forwarded-For); its status."""
    browser = requests.Session()
    form = browser.get(f"{web.url}/console/signin", headers=headers, timeout=10)
    answer = browser.post(
        f"{web.url}/console/signin",
        data={"csrf": csrf_of(form.text), "token": token, "next": "/console"},
        headers=headers,
        allow_redirects=False,
        timeout=10,
    )
    return answer.status_code


# --- 1, 2: forwarded headers ------------------------------------------------------------------


def test_without_a_trusted_proxy_x_forwarded_for_names_nobody(start_web_live: StartWeb) -> None:
    """Given CONSOLE_TRUST_PROXY=false (the default), When a client throttled for wrong
    tokens tries again claiming other addresses in X-Forwarded-For, Then it is still
    throttled (429), and the log names its real address, never the claimed ones."""
    web = start_web_live()
    statuses = [sign_in(web, WRONG_TOKEN) for _ in range(5)]
    assert statuses[-1] == 429, statuses

    spoofed = [
        sign_in(web, WRONG_TOKEN, {"X-Forwarded-For": f"10.9.9.{n}", "X-Forwarded-Proto": "https"})
        for n in range(3)
    ]

    assert spoofed == [429, 429, 429]
    assert "10.9.9." not in web.log()
    assert "from 127.0.0.1" in web.log()
    assert web.log().count("X-Forwarded-For ignored (CONSOLE_TRUST_PROXY=false)") == 1


def test_behind_a_trusted_proxy_the_client_is_counted_from_the_right(
    start_web_live: StartWeb,
) -> None:
    """Given CONSOLE_TRUST_PROXY=true and one proxy (TRUSTED_PROXY_HOPS=1) that appends the
    address it saw, When a client rotates a spoofed first hop, Then it is throttled all the
    same (the last hop is its own), and a victim whose address it writes first is not locked
    out: the victim signs in."""
    web = start_web_live("--access-log", CONSOLE_TRUST_PROXY="true")
    attacker, victim = "198.51.100.7", "198.51.100.99"

    statuses = [
        sign_in(web, WRONG_TOKEN, {"X-Forwarded-For": f"10.9.9.{n}, {victim}, {attacker}"})
        for n in range(8)
    ]

    assert 429 in statuses, statuses
    assert sign_in(web, API_TOKEN, {"X-Forwarded-For": victim}) == 303
    log = web.log()
    assert f"from {attacker}" in log and "10.9.9." not in log.replace("X-Forwarded-For", "")
    assert f'{victim}:0 - "POST /console/signin' in log  # the access log names it too


# --- 3: bearer tokens --------------------------------------------------------------------------


def test_wrong_bearer_tokens_are_throttled_per_client(start_web_live: StartWeb) -> None:
    """Given the REST API, When one client sends 30 wrong bearer tokens, Then it soon gets
    429 with Retry-After, and while it waits even the right token is not looked at."""
    web = start_web_live()
    wrong = {"Authorization": f"Bearer {WRONG_TOKEN}"}
    answers = [requests.get(f"{web.url}/resends", headers=wrong, timeout=10) for _ in range(30)]

    statuses = [answer.status_code for answer in answers]
    assert statuses[:3] == [401, 401, 401]
    assert statuses.count(429) >= 20, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    right = {"Authorization": f"Bearer {API_TOKEN}"}
    assert requests.get(f"{web.url}/resends", headers=right, timeout=10).status_code == 429


def test_a_weak_or_reused_secret_stops_the_web_process_at_start(redis_client: redis.Redis) -> None:
    """Given API_TOKEN='a'*32, or a token equal to WEBHOOK_SECRET, `tango-resend web` exits 2
    at once with a message naming the variable and never the value."""
    base = {"REDIS_URL": TEST_REDIS_URL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    for token, words in (("a" * 32, "easy to guess"), (WEBHOOK_SECRET, "must differ")):
        ran = run_python(
            ["-m", "worker", "web", "--port", str(free_port())], {**base, "API_TOKEN": token}
        )
        assert ran.returncode == 2, ran.stderr
        assert "API_TOKEN" in ran.stderr and words in ran.stderr
        assert token not in ran.stderr


# --- 5: slow clients, concurrency, clients that hang up ------------------------------------


def connect(web: WebProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", web.port), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent before closing `sock`, which it must do within `seconds`."""
    sock.settimeout(seconds)
    received = b""
    while True:
        chunk = sock.recv(4096)  # a timeout here fails the test: still open
        if not chunk:
            return received
        received += chunk


def test_a_client_trickling_its_headers_is_cut_off(start_web_live: StartWeb) -> None:
    """Given WEB_HEADER_TIMEOUT_SECONDS=1, When a client sends part of its headers and then
    a byte at a time, Then the connection is closed (with a 408) within a few seconds."""
    web = start_web_live(WEB_HEADER_TIMEOUT_SECONDS="1")
    with connect(web) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(3):  # trickling does not reset the deadline
            sock.sendall(b"X")
            time.sleep(0.2)
        answer = closed_within(sock, 5)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 5
    wait_for(lambda: "no complete request headers within 1 s" in web.log(), timeout=5)


def test_a_client_trickling_its_body_is_cut_off_with_one_log_line(
    start_web_live: StartWeb,
) -> None:
    """Given WEB_BODY_TIMEOUT_SECONDS=1, When a client sends a webhook's headers and only part
    of its body, Then the connection is closed within a few seconds, nothing is stored, and
    the log says so in lines of its own, without a traceback."""
    web = start_web_live(WEB_BODY_TIMEOUT_SECONDS="1")
    with connect(web) as sock:
        sock.sendall(
            b"POST /webhooks/resends HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 100\r\n\r\n{"refer'
        )
        closed_within(sock, 5)
    wait_for(lambda: "went away before sending its whole body" in web.log(), timeout=5)
    assert "no complete body within 1 s" in web.log()
    assert "Traceback" not in web.log()


def test_a_client_hanging_up_mid_body_is_one_log_line(start_web_live: StartWeb) -> None:
    """When clients send part of a body and hang up, Then each is one log line, with no
    traceback (it used to be a 56-line ClientDisconnect traceback each)."""
    web = start_web_live()
    for _ in range(3):
        with connect(web) as sock:
            sock.sendall(
                b"POST /webhooks/resends HTTP/1.1\r\nHost: x\r\n"
                b'content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"ref'
            )
            time.sleep(0.1)  # let the server start reading the body before the hang-up
    wait_for(lambda: web.log().count("went away before sending its whole body") == 3, timeout=10)
    assert "Traceback" not in web.log() and "ClientDisconnect" not in web.log()


def test_past_the_concurrency_limit_a_request_gets_503(start_web_live: StartWeb) -> None:
    """Given WEB_MAX_CONCURRENCY=2, When two connections are open, Then a third client's
    request is answered 503 at once, and served again once they close."""
    web = start_web_live(WEB_MAX_CONCURRENCY="2")
    holders = [connect(web) for _ in range(2)]
    try:
        assert requests.get(f"{web.url}/healthz", timeout=10).status_code == 503
    finally:
        for holder in holders:
            holder.close()
    wait_for(lambda: requests.get(f"{web.url}/healthz", timeout=10).status_code == 200, timeout=10)


# --- 7: log forging ---------------------------------------------------------------------------


def test_an_id_holding_a_newline_forges_no_log_line(start_web_live: StartWeb) -> None:
    """Given a signed-in console session, When a cancel is posted for an id holding `%0A`
    and a fake log line, Then it is refused (404) before the id is used, and no line of the
    log starts with the forgery."""
    web = start_web_live("--access-log")
    browser = requests.Session()
    form = browser.get(f"{web.url}/console/signin", timeout=10)
    browser.post(
        f"{web.url}/console/signin",
        data={"csrf": csrf_of(form.text), "token": API_TOKEN, "next": "/console"},
        timeout=10,
    )
    csrf = csrf_of(browser.get(f"{web.url}/console", timeout=10).text)
    forged = "[2026-12-05 00:00:00,000: INFO] tango_resend.console: forged"
    path = "/console/requests/x%0A" + requests.utils.quote(forged) + "/cancel"

    answer = browser.post(
        f"{web.url}{path}", data={"csrf": csrf}, allow_redirects=False, timeout=10
    )

    assert answer.status_code == 404
    wait_for(lambda: '/cancel HTTP/1.1" 404' in web.log(), timeout=5)
    assert not any(line.startswith("[2026-12-05 00:00:00") for line in web.log().splitlines())


# --- 14: the public port and the office's ------------------------------------------------------


def test_an_internal_port_keeps_the_office_routes_off_the_public_port(
    start_web_live: StartWeb,
) -> None:
    """Given WEB_INTERNAL_PORT, Then the public port answers only the webhook route and
    /healthz (the console, the REST API, /openapi.json and /metrics are 404 there), and the
    internal port answers all of them (and /docs)."""
    internal = free_port()
    web = start_web_live(WEB_INTERNAL_PORT=str(internal))
    office = f"http://127.0.0.1:{internal}"
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}

    for path in ("/console/signin", "/resends", "/openapi.json", "/docs", "/metrics"):
        public = requests.get(f"{web.url}{path}", headers=bearer, timeout=10)
        assert public.status_code == 404, path
        assert requests.get(f"{office}{path}", headers=bearer, timeout=10).status_code == 200
    assert requests.get(f"{web.url}/healthz", timeout=10).status_code == 200
    unsigned = requests.post(
        f"{web.url}/webhooks/resends", json={"referenceOrderID": "RA251125-1001-01"}, timeout=10
    )
    assert unsigned.status_code == 401  # the route is there: it wants a signature
    assert f"internal port 127.0.0.1:{internal} (WEB_INTERNAL_PORT) serves every route" in web.log()


def test_an_internal_port_equal_to_the_public_one_is_refused(redis_client: redis.Redis) -> None:
    port = str(free_port())
    settings = {"REDIS_URL": TEST_REDIS_URL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    ran = run_python(
        ["-m", "worker", "web", "--port", port], {**settings, "WEB_INTERNAL_PORT": port}
    )
    assert ran.returncode == 2 and "WEB_INTERNAL_PORT must differ from --port" in ran.stderr
