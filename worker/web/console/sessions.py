"""Console sessions and CSRF tokens, kept in Redis under keyed digests.

A session is a random cookie value. Redis holds only an HMAC of it, and an HMAC of the token
that opened it, under a key that Redis never holds (`session_key`): a dump of Redis gives
neither a usable cookie nor anything to test guessed tokens against offline. A session ends
on sign-out, after CONSOLE_IDLE_TIMEOUT_SECONDS without a page view or action (the key's
TTL, renewed by each), and 8 hours after sign-in whatever happens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import redis
from fastapi import Request

from worker.core.settings import Settings, webhook_key
from worker.state.keys import RedisKeys
from worker.web.api_tokens import Role

SESSION_COOKIE = "tango_resend_console"
SIGNIN_CSRF_COOKIE = "tango_resend_console_signin"
SESSION_SECONDS = 8 * 3600
_KEY_LABEL = b"tango-resend console sessions v1"


@dataclass(frozen=True)
class Session:
    role: Role
    csrf: str
    # Which token opened it (a keyed digest): a session outlives no rotation of its token.
    token_digest: str = ""
    # The name of the agent whose token opened it (API_TOKENS; "" in a session opened before
    # tokens had names: its role's own token, `default` or `read`).
    name: str = ""

    @property
    def agent(self) -> str:
        """Who is signed in, as the audit trail names them."""
        return self.name or ("default" if self.role is Role.WRITE else "read")


def session_key(settings: Settings, client: redis.Redis, keys: RedisKeys) -> bytes:
    """The HMAC key of session digests: from CONSOLE_SESSION_SECRET, else from WEBHOOK_SECRET
    (which every web process of a deployment shares, and Redis never sees); with neither
    (unsigned webhooks, local development), one generated once and kept in Redis, which then
    protects nothing against a dump of it (docs/security.md, "Sessions")."""
    if settings.console_session_secret is not None:
        secret = settings.console_session_secret.get_secret_value().encode()
        return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()
    if settings.webhook_secret is not None:
        signing_key = webhook_key(settings.webhook_secret.get_secret_value()) or b""
        return hmac.new(signing_key, _KEY_LABEL, hashlib.sha256).digest()
    client.set(keys.console_session_key(), secrets.token_hex(32), nx=True)
    return bytes.fromhex(str(client.get(keys.console_session_key())))


class SessionDigests:
    """Keyed digests of cookies and tokens, never the values themselves."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def of_cookie(self, cookie: str) -> str:
        return self._digest(b"cookie:", cookie)

    def of_token(self, token: str) -> str:
        """What a session keeps of the token that opened it."""
        return self._digest(b"token:", token)

    def _digest(self, purpose: bytes, value: str) -> str:
        message = purpose + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


class SessionStore:
    """Create, find and end console sessions."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, digests: SessionDigests, idle_seconds: int
    ) -> None:
        self._client = client
        self._keys = keys
        self._digests = digests
        self._idle_seconds = idle_seconds

    def create(self, role: Role, token: str, name: str = "") -> tuple[str, Session]:
        """A new session opened with `token` (the agent `name`'s): the cookie value to hand
        out, and the session."""
        cookie = secrets.token_urlsafe(32)
        session = Session(role, secrets.token_urlsafe(32), self._digests.of_token(token), name)
        key = self._keys.console_session(self._digests.of_cookie(cookie))
        ends_at = int(time.time()) + SESSION_SECONDS
        with self._client.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "role": role.value,
                    "csrf": session.csrf,
                    "token": session.token_digest,
                    "name": name,
                    "ends_at": ends_at,
                },
            )
            pipe.expire(key, min(self._idle_seconds, SESSION_SECONDS))
            pipe.execute()
        return cookie, session

    def find(self, cookie: str | None, *, active: bool = True) -> Session | None:
        """The session of `cookie`, or None. `active`: a person is using it (a page view, an
        action), which holds off the idle timeout; a page's own refreshing is not."""
        if not cookie or len(cookie) > 128:
            return None
        key = self._keys.console_session(self._digests.of_cookie(cookie))
        stored = self._client.hgetall(key)
        if not stored or stored.get("role") not in {Role.WRITE.value, Role.READ.value}:
            return None
        remaining = int(stored.get("ends_at", 0)) - int(time.time())
        if remaining <= 0:
            self._client.delete(key)
            return None
        if active:
            self._client.expire(key, min(self._idle_seconds, remaining))
        return Session(
            Role(str(stored["role"])),
            str(stored["csrf"]),
            str(stored.get("token", "")),
            str(stored.get("name", "")),
        )

    def end(self, cookie: str | None) -> None:
        if cookie and len(cookie) <= 128:
            self._client.delete(self._keys.console_session(self._digests.of_cookie(cookie)))


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a form's CSRF token with the expected one."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def client_of(request: Request) -> str:
    """Whom the throttle counts: the connection's peer, or the address a trusted proxy names
    (worker/web/forwarded.py has already put it in its place)."""
    return request.client.host if request.client else "unknown"


def is_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS (then cookies are Secure); a proxy's word
    for it counts only when trusted (worker/web/forwarded.py)."""
    return request.url.scheme == "https"
