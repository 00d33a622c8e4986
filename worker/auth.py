"""How requests to Tango are authorised: HTTP Basic, or one OAuth token shared by the fleet."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import redis
import requests

from worker.error_mapping import error_for_exception, error_for_response, parse_json_object
from worker.errors import TangoAuthenticationError, TangoTransientError
from worker.keys import RedisKeys
from worker.settings import Settings

logger = logging.getLogger(__name__)

# Tango rate-limits token requests hard, so a token is renewed ahead of expiry, by one process.
_RENEW_BEFORE_EXPIRY_FRACTION = 0.1
_MAX_RENEW_MARGIN_SECONDS = 3600.0
_FETCH_LOCK_SECONDS = 30
_WAIT_FOR_TOKEN_SECONDS = 35.0
_POLL_SECONDS = 0.05

_DROP_IF_CURRENT = """
local cached = redis.call('GET', KEYS[1])
if cached and cjson.decode(cached)['access_token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
    ) -> None:
        assert settings.tango_client_id and settings.tango_client_secret
        assert settings.tango_token_url
        self._settings = settings
        self._redis = client
        self._session = session
        self._keys = keys
        self._sleep = sleep
        self._release = client.register_script(_RELEASE_IF_OWNER)
        self._drop_if_current = client.register_script(_DROP_IF_CURRENT)

    def authorization(self) -> str:
        return "Bearer " + self._token()

    def rejected(self, authorization: str) -> bool:
        token = authorization.removeprefix("Bearer ")
        # Compare-and-delete, so only the stale token is dropped, never a newer one.
        self._drop_if_current(keys=[self._keys.oauth_token], args=[token])
        return True

    def _token(self) -> str:
        deadline = time.monotonic() + _WAIT_FOR_TOKEN_SECONDS
        while True:
            cached = self._redis.get(self._keys.oauth_token)
            if cached is not None:
                return str(json.loads(cached)["access_token"])
            owner = uuid.uuid4().hex
            if self._redis.set(self._keys.oauth_fetch_lock, owner, nx=True, ex=_FETCH_LOCK_SECONDS):
                try:
                    cached = self._redis.get(self._keys.oauth_token)
                    if cached is not None:
                        return str(json.loads(cached)["access_token"])
                    return self._fetch_and_store()
                finally:
                    self._release(keys=[self._keys.oauth_fetch_lock], args=[owner])
            if time.monotonic() > deadline:
                raise TangoTransientError("timed out waiting for another process's OAuth token")
            self._sleep(_POLL_SECONDS)

    def _fetch_and_store(self) -> str:
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
            raise error_for_exception(error) from None
        failure = error_for_response(
            response.status_code, response.headers, response.text, response.reason
        )
        if failure is not None:
            if isinstance(failure, TangoTransientError):
                raise failure
            raise TangoAuthenticationError(
                f"token request refused: {failure.message}",
                status=failure.status,
                i18n_key=failure.i18n_key,
                request_id=failure.request_id,
            )
        body = parse_json_object(response.text) or {}
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TangoAuthenticationError("token endpoint answered without an access_token")
        lifetime = _as_seconds(body.get("expires_in"), default=86400.0)
        margin = min(lifetime * _RENEW_BEFORE_EXPIRY_FRACTION, _MAX_RENEW_MARGIN_SECONDS)
        cache_seconds = max(1, int(lifetime - margin))
        self._redis.set(
            self._keys.oauth_token, json.dumps({"access_token": token}), ex=cache_seconds
        )
        logger.info("fetched a new Tango OAuth token, cached for %ss", cache_seconds)
        return token


def _as_seconds(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return default
        return seconds if seconds > 0 else default
    return default


def build_authorizer(
    settings: Settings, client: redis.Redis, session: requests.Session, keys: RedisKeys
) -> Authorizer:
    """The authorizer the settings ask for: OAuth when configured, else HTTP Basic."""
    if settings.uses_oauth:
        return SharedTokenAuthorizer(settings, client, session, keys)
    settings.require_tango_credentials()
    assert settings.tango_platform_name and settings.tango_platform_key
    return BasicAuthorizer(
        settings.tango_platform_name, settings.tango_platform_key.get_secret_value()
    )
