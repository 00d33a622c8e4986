"""How requests to Tango are authorised: HTTP Basic, or one OAuth token shared by the fleet."""

from __future__ import annotations

import base64
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import redis
import requests

from worker.core.redaction import url_without_secrets
from worker.core.settings import Settings
from worker.state import scripts
from worker.state.keys import RedisKeys
from worker.tango.error_mapping import error_for_exception, error_for_response, parse_json_object
from worker.tango.errors import TangoTransientError

if TYPE_CHECKING:
    from worker.state.metrics import MetricsRecorder

logger = logging.getLogger(__name__)

# Tango rate-limits token requests hard, so a token is renewed ahead of expiry, by one process.
_RENEW_BEFORE_EXPIRY_FRACTION = 0.1
_MAX_RENEW_MARGIN_SECONDS = 3600.0
# The fetch lock outlives the longest fetch the timeouts allow (requests' timeouts bound each
# connection attempt and each read, so twice connect plus read), plus this margin; waiters
# wait that long plus the margin again.
_FETCH_MARGIN_SECONDS = 10.0
_POLL_SECONDS = 0.05
# `expires_in` is clamped to this range: a token lives at least a second, at most a week.
_MIN_LIFETIME_SECONDS = 1.0
_MAX_LIFETIME_SECONDS = 7 * 86400.0
_DEFAULT_LIFETIME_SECONDS = 86400.0
# After a failed fetch nobody asks again for this long: 5 s, doubling per consecutive failure
# up to 30 s, so a dead endpoint is asked at most about twice a minute by the whole fleet.
_FAILURE_CACHE_SECONDS = 5.0
_MAX_FAILURE_CACHE_SECONDS = 30.0
# How long /healthz keeps reporting the last failure if nobody tries again.
_LAST_FAILURE_TTL_SECONDS = 3600


class TokenUnavailable(TangoTransientError):
    """Raised when the fleet's OAuth token cannot be had: the token endpoint failed, refused
    us (a mistyped TANGO_TOKEN_URL, wrong client credentials) or answered without a token.

    A configuration or outage problem, never the request's: it is never ambiguous (no resend
    was sent), and the executor waits and retries it with backoff without failing the request
    or using up its retries. `failures` counts the fleet's consecutive failed fetches."""

    def __init__(self, message: str, *, failures: int = 1, **kwargs: Any) -> None:
        kwargs["ambiguous"] = False
        super().__init__(message, **kwargs)
        self.failures = failures


class Authorizer(Protocol):
    """Gives the Authorization header for a call, and takes back one Tango rejected."""

    def authorization(self) -> str: ...

    def rejected(self, authorization: str) -> bool:
        """Forget a rejected credential; True when asking again may give a different one."""
        ...


class BasicAuthorizer:
    """HTTP Basic with the platform name and key."""

    def __init__(self, platform_name: str, platform_key: str) -> None:
        raw = f"{platform_name}:{platform_key}".encode()
        self._header = "Basic " + base64.b64encode(raw).decode()

    def authorization(self) -> str:
        return self._header

    def rejected(self, authorization: str) -> bool:
        return False

    def __repr__(self) -> str:
        return "BasicAuthorizer(<redacted>)"


class SharedTokenAuthorizer:
    """OAuth client credentials with one token cached in Redis for every process and host.

    One process at a time fetches (a Redis lock); the others wait for the token it stores.
    The cached copy expires ahead of the token itself, so renewal happens before Tango
    would refuse it. A 401 drops the cached token only if it is still the one rejected, so
    a fleet of workers seeing the same 401 causes a single renewal.
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        session: requests.Session,
        keys: RedisKeys,
        sleep: Callable[[float], None] = time.sleep,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        assert settings.tango_client_id and settings.tango_client_secret
        assert settings.tango_token_url
        self._settings = settings
        self._redis = client
        self._session = session
        self._keys = keys
        self._sleep = sleep
        self._metrics = metrics
        timeouts = settings.tango_connect_timeout_seconds + settings.tango_timeout_seconds
        longest_fetch = 2 * timeouts
        self.fetch_lock_seconds = math.ceil(longest_fetch + _FETCH_MARGIN_SECONDS)
        self.wait_for_token_seconds = self.fetch_lock_seconds + _FETCH_MARGIN_SECONDS
        self._release = scripts.load("lock_release_if_owner").bind(client)
        self._drop_if_current = scripts.load("token_drop_if_current").bind(client)

    def authorization(self) -> str:
        return "Bearer " + self._token()

    def rejected(self, authorization: str) -> bool:
        token = authorization.removeprefix("Bearer ")
        # Compare-and-delete, so only the stale token is dropped, never a newer one.
        self._drop_if_current(
            keys={"token_key": self._keys.oauth_token}, args={"rejected_token": token}
        )
        return True

    def _token(self) -> str:
        deadline = time.monotonic() + self.wait_for_token_seconds
        keys = self._keys
        while True:
            cached = self._redis.get(keys.oauth_token)
            if cached is not None:
                return str(json.loads(cached)["access_token"])
            self._raise_if_recently_failed()
            owner = uuid.uuid4().hex
            if self._redis.set(keys.oauth_fetch_lock, owner, nx=True, ex=self.fetch_lock_seconds):
                try:
                    cached = self._redis.get(keys.oauth_token)
                    if cached is not None:
                        return str(json.loads(cached)["access_token"])
                    self._raise_if_recently_failed()
                    return self._fetch_and_store()
                finally:
                    self._release(keys={"lock_key": keys.oauth_fetch_lock}, args={"owner": owner})
            if time.monotonic() > deadline:
                raise TokenUnavailable("timed out waiting for another process's OAuth token")
            self._sleep(_POLL_SECONDS)

    def _raise_if_recently_failed(self) -> None:
        """A fetch failed a moment ago: do not ask the endpoint again until its cache ends."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.oauth_fetch_failed)
            pipe.pttl(self._keys.oauth_fetch_failed)
            failed, pttl = pipe.execute()
        if failed is None:
            return
        last = json.loads(failed)
        raise TokenUnavailable(
            f"the OAuth token endpoint failed a moment ago: {last.get('error')}",
            status=last.get("status"),
            retry_after=max(int(pttl), 1) / 1000,
            failures=int(last.get("failures", 1)),
        )

    def _fetch_and_store(self) -> str:
        """Fetch a token and cache it; any failure is cached briefly, logged, kept for
        /healthz and raised as `TokenUnavailable`."""
        started = time.monotonic()
        status: int | None = None
        try:
            status, token = self._fetch()
        except TokenUnavailable as failure:
            status = failure.status
            raise self._failed(failure) from None
        finally:
            if self._metrics is not None:
                self._metrics.token_call(status, time.monotonic() - started)
        self._redis.delete(self._keys.oauth_fetch_failed, self._keys.oauth_last_failure)
        return token

    def _failed(self, failure: TokenUnavailable) -> TokenUnavailable:
        keys = self._keys
        try:
            previous = json.loads(self._redis.get(keys.oauth_last_failure) or "{}")
        except ValueError:
            previous = {}
        failures = int(previous.get("failures", 0)) + 1
        cache = min(_FAILURE_CACHE_SECONDS * 2 ** (failures - 1), _MAX_FAILURE_CACHE_SECONDS)
        now = datetime.now(UTC).isoformat()
        report = {
            "error": failure.message,
            "status": failure.status,
            "url": _shown_url(str(self._settings.tango_token_url)),
            "failures": failures,
            "since": previous.get("since", now),
            "at": now,
        }
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.oauth_fetch_failed, json.dumps(report), px=int(cache * 1000))
            pipe.set(keys.oauth_last_failure, json.dumps(report), ex=_LAST_FAILURE_TTL_SECONDS)
            pipe.execute()
        logger.error(
            "OAuth token endpoint %s failed (%s; %d in a row): no request fails for it, they "
            "wait and retry; check TANGO_TOKEN_URL and the client credentials",
            report["url"],
            failure,
            failures,
        )
        return TokenUnavailable(
            f"the OAuth token endpoint failed: {failure.message}",
            status=failure.status,
            retry_after=cache,
            failures=failures,
        )

    def _fetch(self) -> tuple[int, str]:
        """One call to the token endpoint: (HTTP status, token), or `TokenUnavailable`."""
        settings = self._settings
        assert settings.tango_client_secret is not None
        form = {
            "client_id": settings.tango_client_id,
            "client_secret": settings.tango_client_secret.get_secret_value(),
            "grant_type": "client_credentials",
            "scope": settings.tango_oauth_scope,
            "audience": settings.tango_oauth_audience,
        }
        try:
            response = self._session.post(
                str(settings.tango_token_url),
                data=form,
                timeout=(settings.tango_connect_timeout_seconds, settings.tango_timeout_seconds),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            # Nothing was sent to the resend endpoint: a timeout here is never ambiguous.
            raise TokenUnavailable(error_for_exception(error).message) from None
        failure = error_for_response(
            response.status_code, response.headers, response.text, response.reason
        )
        if failure is not None:
            raise TokenUnavailable(
                f"token request refused: {failure.message}",
                status=failure.status,
                i18n_key=failure.i18n_key,
                request_id=failure.request_id,
            )
        body = parse_json_object(response.text) or {}
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenUnavailable(
                "token endpoint answered without an access_token", status=response.status_code
            )
        lifetime = token_lifetime_seconds(body.get("expires_in"))
        margin = min(lifetime * _RENEW_BEFORE_EXPIRY_FRACTION, _MAX_RENEW_MARGIN_SECONDS)
        cache_seconds = max(1, int(lifetime - margin))
        self._redis.set(
            self._keys.oauth_token, json.dumps({"access_token": token}), ex=cache_seconds
        )
        logger.info("fetched a new Tango OAuth token, cached for %ss", cache_seconds)
        return response.status_code, token


def token_lifetime_seconds(value: object) -> float:
    """`expires_in` as seconds, clamped to [1 s, 1 week]; the default (a day) when it is
    missing, not a number, not finite, or not positive."""
    seconds: float
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return _DEFAULT_LIFETIME_SECONDS
    else:
        return _DEFAULT_LIFETIME_SECONDS
    if math.isnan(seconds) or seconds <= 0:
        return _DEFAULT_LIFETIME_SECONDS
    return min(max(seconds, _MIN_LIFETIME_SECONDS), _MAX_LIFETIME_SECONDS)


def _shown_url(url: str) -> str:
    """The token URL for logs: never its userinfo or query (`url_without_secrets`)."""
    return url_without_secrets(url)


def last_token_failure(client: redis.Redis, keys: RedisKeys) -> dict[str, Any] | None:
    """The last token-endpoint failure if no fetch has succeeded since (for /healthz)."""
    raw = client.get(keys.oauth_last_failure)
    if raw is None:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def build_authorizer(
    settings: Settings,
    client: redis.Redis,
    session: requests.Session,
    keys: RedisKeys,
    metrics: MetricsRecorder | None = None,
) -> Authorizer:
    """The authorizer the settings ask for: OAuth when configured, else HTTP Basic."""
    if settings.uses_oauth:
        return SharedTokenAuthorizer(settings, client, session, keys, metrics=metrics)
    settings.require_tango_credentials()
    assert settings.tango_platform_name and settings.tango_platform_key
    return BasicAuthorizer(
        settings.tango_platform_name, settings.tango_platform_key.get_secret_value()
    )
