"""Unit tests for worker.tango.auth: HTTP Basic, and one OAuth token shared through a real Redis."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import pytest
import redis
import requests
import responses

from worker.core.settings import ConfigurationError, Settings, load_settings
from worker.state.keys import RedisKeys
from worker.state.metrics import MetricsRecorder
from worker.tango.auth import (
    BasicAuthorizer,
    SharedTokenAuthorizer,
    TokenUnavailable,
    build_authorizer,
    last_token_failure,
    token_lifetime_seconds,
)
from worker.tango.errors import TangoTransientError

KEYS = RedisKeys("test")
TOKEN_URL = "https://auth.example.test/oauth/token"
CLIENT_SECRET = "cs-Sup3rS3cret-do-not-store"
PLATFORM_KEY = "pk-Sup3rS3cret-do-not-log"


@pytest.fixture
def oauth_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TANGO_CLIENT_ID", "client-1")
    monkeypatch.setenv("TANGO_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("TANGO_TOKEN_URL", TOKEN_URL)
    return load_settings()


@pytest.fixture
def token_endpoint() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def token_answer(
    tokens: list[str], expires_in: object = 86400
) -> Callable[[requests.PreparedRequest], tuple[int, dict[str, str], str]]:
    """A token endpoint that hands out `tokens` in order, one per request."""
    remaining = list(tokens)

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = {
            "access_token": remaining.pop(0),
            "scope": "raas.all",
            "expires_in": expires_in,
            "token_type": "Bearer",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    return answer


def authorizer(
    settings: Settings,
    client: redis.Redis,
    sleep: Callable[[float], None] | None = None,
) -> SharedTokenAuthorizer:
    """A fresh authorizer with its own session, as another worker process would have."""
    if sleep is None:
        return SharedTokenAuthorizer(settings, client, requests.Session(), KEYS)
    return SharedTokenAuthorizer(settings, client, requests.Session(), KEYS, sleep=sleep)


def all_redis_text(client: redis.Redis) -> str:
    """Every key, value and TTL in the test database, as one string."""
    parts = []
    for key in client.keys("*"):
        parts.append(key)
        if client.type(key) == "string":
            parts.append(str(client.get(key)))
    return "\n".join(parts)


# --- one fetch, shared --------------------------------------------------------------------


def test_one_fetch_is_cached_and_reused_by_another_authorizer(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    """Given one process fetched a token, When another asks, Then it reads Redis, not Tango."""
    token_endpoint.add_callback(responses.POST, TOKEN_URL, callback=token_answer(["tok-1"]))
    first, second = (
        authorizer(oauth_settings, redis_client),
        authorizer(oauth_settings, redis_client),
    )

    assert first.authorization() == "Bearer tok-1"
    assert first.authorization() == "Bearer tok-1"
    assert second.authorization() == "Bearer tok-1"

    assert len(token_endpoint.calls) == 1
    assert redis_client.exists(KEYS.oauth_fetch_lock) == 0


def test_the_token_request_is_a_client_credentials_form(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    token_endpoint.add_callback(responses.POST, TOKEN_URL, callback=token_answer(["tok-1"]))

    authorizer(oauth_settings, redis_client).authorization()

    request = token_endpoint.calls[0].request
    body = request.body if isinstance(request.body, str) else (request.body or b"").decode()
    assert parse_qs(body) == {
        "client_id": ["client-1"],
        "client_secret": [CLIENT_SECRET],
        "grant_type": ["client_credentials"],
        "scope": ["raas.all"],
        "audience": ["https://api.tangocard.com/"],
    }


@pytest.mark.parametrize(
    ("expires_in", "longest_ttl"),
    [(86400, 86400 - 3600), (600, 540), ("3600", 3240), (None, 86400 - 3600)],
)
def test_the_cached_copy_expires_before_the_token_does(
    oauth_settings: Settings,
    redis_client: redis.Redis,
    token_endpoint: responses.RequestsMock,
    expires_in: object,
    longest_ttl: int,
) -> None:
    token_endpoint.add_callback(
        responses.POST, TOKEN_URL, callback=token_answer(["tok-1"], expires_in=expires_in)
    )

    authorizer(oauth_settings, redis_client).authorization()

    ttl = redis_client.ttl(KEYS.oauth_token)
    lifetime = float(expires_in) if expires_in is not None else 86400.0  # type: ignore[arg-type]
    assert 0 < ttl <= longest_ttl < lifetime


def test_the_client_secret_never_reaches_redis(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    token_endpoint.add_callback(responses.POST, TOKEN_URL, callback=token_answer(["tok-1"]))

    authorizer(oauth_settings, redis_client).authorization()

    stored = all_redis_text(redis_client)
    assert "tok-1" in stored
    assert CLIENT_SECRET not in stored
    assert "client-1" not in stored


# --- rejection ------------------------------------------------------------------------------


def test_rejecting_the_current_token_makes_the_next_call_fetch_a_new_one(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    token_endpoint.add_callback(
        responses.POST, TOKEN_URL, callback=token_answer(["tok-1", "tok-2"])
    )
    auth = authorizer(oauth_settings, redis_client)
    rejected_header = auth.authorization()

    assert auth.rejected(rejected_header) is True

    assert redis_client.exists(KEYS.oauth_token) == 0
    assert auth.authorization() == "Bearer tok-2"
    assert len(token_endpoint.calls) == 2


def test_a_stale_rejection_does_not_drop_a_newer_token(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    """Given worker B already renewed after A's 401, When B's stale 401 arrives, Then no refetch."""
    token_endpoint.add_callback(
        responses.POST, TOKEN_URL, callback=token_answer(["tok-1", "tok-2", "tok-3"])
    )
    worker_a, worker_b = (
        authorizer(oauth_settings, redis_client),
        authorizer(oauth_settings, redis_client),
    )
    stale = worker_a.authorization()
    assert worker_b.authorization() == stale
    worker_a.rejected(stale)
    assert worker_a.authorization() == "Bearer tok-2"

    worker_b.rejected(stale)

    assert worker_b.authorization() == "Bearer tok-2"
    assert worker_a.authorization() == "Bearer tok-2"
    assert len(token_endpoint.calls) == 2


def test_rejecting_when_nothing_is_cached_is_harmless(
    oauth_settings: Settings, redis_client: redis.Redis
) -> None:
    assert authorizer(oauth_settings, redis_client).rejected("Bearer tok-x") is True
    assert redis_client.keys("*") == []


# --- a fleet starting at once ---------------------------------------------------------------


def test_eight_workers_starting_at_once_make_exactly_one_token_request(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    """Given 8 authorizers released together, the token endpoint is asked exactly once.

    The endpoint holds its answer until the other 7 are seen waiting for the fetch lock, so
    the test proves they waited rather than merely arrived late.
    """
    contenders = 8
    waiting: set[int] = set()
    waiting_lock = threading.Lock()
    all_waiting = threading.Event()
    pause = threading.Event()  # never set: its timeout is the poll interval

    def poll_sleep(seconds: float) -> None:
        with waiting_lock:
            waiting.add(threading.get_ident())
            if len(waiting) >= contenders - 1:
                all_waiting.set()
        pause.wait(min(seconds, 0.005))

    issue = token_answer([f"tok-{i}" for i in range(contenders)])

    def slow_answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert all_waiting.wait(timeout=10), "the other workers never waited for the lock"
        return issue(request)

    token_endpoint.add_callback(responses.POST, TOKEN_URL, callback=slow_answer)
    barrier = threading.Barrier(contenders)
    headers: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        own = authorizer(oauth_settings, redis_client, sleep=poll_sleep)
        barrier.wait(timeout=5)
        try:
            headers.append(own.authorization())
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)

    assert failures == []
    assert headers == ["Bearer tok-0"] * contenders
    assert len(token_endpoint.calls) == 1
    assert redis_client.exists(KEYS.oauth_fetch_lock) == 0


# --- token endpoint failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_request", "message": "has exceeded the daily rate limit"}),
        (400, {"error": "invalid_client"}),
        (401, {"error": "unauthorized_client"}),
        (403, {}),
    ],
)
def test_a_refused_token_request_is_a_token_outage_not_a_resend_failure(
    oauth_settings: Settings,
    redis_client: redis.Redis,
    token_endpoint: responses.RequestsMock,
    status: int,
    body: dict[str, str],
) -> None:
    """A refused token request (a mistyped TANGO_TOKEN_URL, wrong credentials) is a
    configuration problem: transient for the requests, never ambiguous, reported."""
    token_endpoint.add(responses.POST, TOKEN_URL, json=body, status=status)

    with pytest.raises(TokenUnavailable) as caught:
        authorizer(oauth_settings, redis_client).authorization()

    assert isinstance(caught.value, TangoTransientError) and caught.value.ambiguous is False
    assert caught.value.status == status
    assert "token request refused: " in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value) + all_redis_text(redis_client)
    # No token cached, the fetch lock released; the failure cached briefly and reported.
    assert set(redis_client.keys("*")) == {KEYS.oauth_fetch_failed, KEYS.oauth_last_failure}
    assert 0 < redis_client.pttl(KEYS.oauth_fetch_failed) <= 5000


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_an_unavailable_token_endpoint_is_transient(
    oauth_settings: Settings,
    redis_client: redis.Redis,
    token_endpoint: responses.RequestsMock,
    status: int,
) -> None:
    token_endpoint.add(
        responses.POST,
        TOKEN_URL,
        body="<html>down</html>",
        status=status,
        content_type="text/html",
    )

    with pytest.raises(TokenUnavailable) as caught:
        authorizer(oauth_settings, redis_client).authorization()

    assert caught.value.status == status and caught.value.ambiguous is False
    assert set(redis_client.keys("*")) == {KEYS.oauth_fetch_failed, KEYS.oauth_last_failure}


def test_a_network_failure_on_the_token_endpoint_is_transient(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    token_endpoint.add(responses.POST, TOKEN_URL, body=requests.ConnectTimeout("slow"))

    with pytest.raises(TokenUnavailable) as caught:
        authorizer(oauth_settings, redis_client).authorization()

    assert caught.value.ambiguous is False
    assert redis_client.get(KEYS.oauth_token) is None


@pytest.mark.parametrize(
    "body", [{}, {"access_token": ""}, {"access_token": 5}, {"token": "tok-1"}]
)
def test_a_success_without_an_access_token_is_a_token_outage(
    oauth_settings: Settings,
    redis_client: redis.Redis,
    token_endpoint: responses.RequestsMock,
    body: dict[str, object],
) -> None:
    token_endpoint.add(responses.POST, TOKEN_URL, json=body, status=200)

    with pytest.raises(TokenUnavailable, match="without an access_token"):
        authorizer(oauth_settings, redis_client).authorization()

    assert redis_client.get(KEYS.oauth_token) is None


def test_a_waiter_gives_up_when_the_lock_holder_never_stores_a_token(
    oauth_settings: Settings,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given another process holds the fetch lock forever, a waiter fails transiently."""
    redis_client.set(KEYS.oauth_fetch_lock, "someone-else", ex=30)
    pause = threading.Event()
    waiter = authorizer(oauth_settings, redis_client, sleep=lambda s: pause.wait(0.005))
    waiter.wait_for_token_seconds = 0.05

    started = time.monotonic()
    with pytest.raises(TokenUnavailable, match="another process's OAuth token"):
        waiter.authorization()

    assert time.monotonic() - started < 5
    assert redis_client.get(KEYS.oauth_fetch_lock) == "someone-else"  # not ours to release


# --- issue 17: token endpoint failures, the fetch lock, expires_in, metrics ----------------


def test_a_token_read_timeout_or_504_is_never_ambiguous(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    """No resend can have happened when the token call failed: not ambiguous."""
    token_endpoint.add(responses.POST, TOKEN_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(TangoTransientError) as timed_out:
        authorizer(oauth_settings, redis_client).authorization()
    assert timed_out.value.ambiguous is False

    redis_client.flushdb()
    token_endpoint.add(responses.POST, TOKEN_URL, body="gateway", status=504)
    with pytest.raises(TangoTransientError) as gateway:
        authorizer(oauth_settings, redis_client).authorization()
    assert gateway.value.ambiguous is False


def test_a_failed_fetch_is_cached_so_a_dead_endpoint_is_asked_once_then_backs_off(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    """Given a token endpoint answering 404 (a mistyped TANGO_TOKEN_URL), twenty requests of
    several processes ask it once; the failure is kept for /healthz until a fetch succeeds."""
    token_endpoint.add(responses.POST, TOKEN_URL, json={"error": "not found"}, status=404)

    for _ in range(20):
        with pytest.raises(TokenUnavailable) as caught:
            authorizer(oauth_settings, redis_client).authorization()
        assert 0 < (caught.value.retry_after or 0) <= 5

    assert len(token_endpoint.calls) == 1
    failure = last_token_failure(redis_client, KEYS)
    assert failure is not None and failure["status"] == 404 and failure["failures"] == 1
    assert failure["url"] == TOKEN_URL

    # The cache ends: the next fetch fails again and is cached longer (backoff).
    redis_client.delete(KEYS.oauth_fetch_failed)
    with pytest.raises(TokenUnavailable) as again:
        authorizer(oauth_settings, redis_client).authorization()
    assert again.value.failures == 2 and again.value.retry_after == 10.0
    assert 5000 < redis_client.pttl(KEYS.oauth_fetch_failed) <= 10000
    assert len(token_endpoint.calls) == 2

    # Fixed: the next fetch succeeds and the report is gone.
    redis_client.delete(KEYS.oauth_fetch_failed)
    token_endpoint.replace(responses.POST, TOKEN_URL, json={"access_token": "t"})
    assert authorizer(oauth_settings, redis_client).authorization() == "Bearer t"
    assert last_token_failure(redis_client, KEYS) is None


def test_the_fetch_lock_outlives_the_slowest_fetch_the_timeouts_allow(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    """With a 60 s read timeout, the lock held during a fetch lasts longer than connect plus
    read (twice: requests' timeouts bound each attempt and read), and waiters wait as long."""
    monkeypatch.setenv("TANGO_CLIENT_ID", "client-1")
    monkeypatch.setenv("TANGO_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("TANGO_TOKEN_URL", TOKEN_URL)
    monkeypatch.setenv("TANGO_TIMEOUT_SECONDS", "60")
    settings = load_settings()
    longest = 2 * (settings.tango_connect_timeout_seconds + settings.tango_timeout_seconds)
    lock_ttls: list[int] = []

    class SlowSession(requests.Session):
        def post(self, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
            lock_ttls.append(int(redis_client.ttl(KEYS.oauth_fetch_lock)))
            response = requests.Response()
            response.status_code = 200
            response._content = b'{"access_token": "tok", "expires_in": 3600}'
            return response

    fetcher = SharedTokenAuthorizer(settings, redis_client, SlowSession(), KEYS)
    assert fetcher.authorization() == "Bearer tok"
    assert lock_ttls and lock_ttls[0] > longest
    assert fetcher.wait_for_token_seconds > lock_ttls[0]


@pytest.mark.parametrize(
    ("expires_in", "cached_between"),
    [
        ("inf", (6 * 86400, 7 * 86400)),
        (1e17, (6 * 86400, 7 * 86400)),
        ("nan", (86400 - 3600, 86400)),
        (-5, (86400 - 3600, 86400)),
        (0.2, (1, 1)),
    ],
)
def test_expires_in_is_clamped(
    oauth_settings: Settings,
    redis_client: redis.Redis,
    token_endpoint: responses.RequestsMock,
    expires_in: object,
    cached_between: tuple[int, int],
) -> None:
    token_endpoint.add_callback(
        responses.POST, TOKEN_URL, callback=token_answer(["tok"], expires_in=expires_in)
    )

    assert authorizer(oauth_settings, redis_client).authorization() == "Bearer tok"

    low, high = cached_between
    assert low <= redis_client.ttl(KEYS.oauth_token) <= high
    assert 1 <= token_lifetime_seconds(expires_in) <= 7 * 86400


def test_token_calls_have_their_own_metrics(
    oauth_settings: Settings, redis_client: redis.Redis, token_endpoint: responses.RequestsMock
) -> None:
    token_endpoint.add_callback(responses.POST, TOKEN_URL, callback=token_answer(["tok"]))
    metrics = MetricsRecorder(redis_client, KEYS)

    SharedTokenAuthorizer(
        oauth_settings, redis_client, requests.Session(), KEYS, metrics=metrics
    ).authorization()

    counters = redis_client.hgetall(KEYS.metrics)
    assert counters["token_calls_total|200"] == "1"
    assert counters["token_latency_count|"] == "1"
    assert not [name for name in counters if name.startswith("tango_")]


# --- HTTP Basic -----------------------------------------------------------------------------


def test_basic_authorizer_header_and_repr() -> None:
    auth = BasicAuthorizer("acme", PLATFORM_KEY)

    expected = "Basic " + base64.b64encode(f"acme:{PLATFORM_KEY}".encode()).decode()
    assert auth.authorization() == expected
    assert PLATFORM_KEY not in repr(auth)
    assert PLATFORM_KEY not in str(auth)
    assert repr(auth) == "BasicAuthorizer(<redacted>)"
    assert auth.rejected(expected) is False  # asking again would give the same credential


def test_build_authorizer_picks_oauth_when_configured(
    oauth_settings: Settings, redis_client: redis.Redis
) -> None:
    built = build_authorizer(oauth_settings, redis_client, requests.Session(), KEYS)

    assert isinstance(built, SharedTokenAuthorizer)


def test_build_authorizer_picks_basic_otherwise(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    monkeypatch.setenv("TANGO_PLATFORM_NAME", "acme")
    monkeypatch.setenv("TANGO_PLATFORM_KEY", PLATFORM_KEY)

    built = build_authorizer(load_settings(), redis_client, requests.Session(), KEYS)

    assert isinstance(built, BasicAuthorizer)
    assert built.authorization().startswith("Basic ")


def test_build_authorizer_without_credentials_is_a_configuration_error(
    redis_client: redis.Redis,
) -> None:
    with pytest.raises(ConfigurationError):
        build_authorizer(load_settings(), redis_client, requests.Session(), KEYS)
