"""Console sessions, CSRF tokens and the sign-in throttle, all kept in Redis.

A session is a random cookie value; Redis holds only its SHA-256 (a dump of Redis gives no
usable cookie), with the role the token granted and the session's CSRF token. The throttle
counts failed sign-ins per client and, from the fourth failure on, makes that client wait
before it may try again (1 s, 2 s, 4 s, ... up to a minute), without holding a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import redis
from fastapi import Request

from worker.state.keys import RedisKeys
from worker.web.api_tokens import Role

SESSION_COOKIE = "tango_resend_console"
SIGNIN_CSRF_COOKIE = "tango_resend_console_signin"
SESSION_SECONDS = 8 * 3600
FREE_FAILURES = 3
MAX_WAIT_SECONDS = 60
FAILURES_KEPT_SECONDS = 15 * 60


@dataclass(frozen=True)
class Session:
    role: Role
    csrf: str
    # Which token opened it (a digest): a session outlives no rotation of its token.
    token_digest: str = ""
    # The name of the agent whose token opened it (API_TOKENS; "" in a session opened before
    # tokens had names: its role's own token, `default` or `read`).
    name: str = ""

    @property
    def agent(self) -> str:
        """Who is signed in, as the audit trail names them."""
        return self.name or ("default" if self.role is Role.WRITE else "read")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def token_digest(token: str) -> str:
    """What a session keeps of the token that opened it (never the token itself)."""
    return hashlib.sha256(b"console-session-token:" + token.encode()).hexdigest()


class SessionStore:
    """Create, find and end console sessions."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def create(self, role: Role, token: str, name: str = "") -> tuple[str, Session]:
        """A new session opened with `token` (the agent `name`'s): the cookie value to hand
        out, and the session."""
        cookie = secrets.token_urlsafe(32)
        session = Session(role, secrets.token_urlsafe(32), token_digest(token), name)
        key = self._keys.console_session(_digest(cookie))
        with self._client.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "role": role.value,
                    "csrf": session.csrf,
                    "token": session.token_digest,
                    "name": name,
                },
            )
            pipe.expire(key, SESSION_SECONDS)
            pipe.execute()
        return cookie, session

    def find(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > 128:
            return None
        stored = self._client.hgetall(self._keys.console_session(_digest(cookie)))
        if not stored or stored.get("role") not in {Role.WRITE.value, Role.READ.value}:
            return None
        return Session(
            Role(str(stored["role"])),
            str(stored["csrf"]),
            str(stored.get("token", "")),
            str(stored.get("name", "")),
        )

    def end(self, cookie: str | None) -> None:
        if cookie and len(cookie) <= 128:
            self._client.delete(self._keys.console_session(_digest(cookie)))


class SignInThrottle:
    """Slows down a client that keeps giving wrong tokens."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def wait_seconds(self, who: str) -> int:
        """How long `who` must still wait before trying again (0: may try now)."""
        remaining = int(self._client.pttl(self._keys.console_signin_wait(who)))
        return 0 if remaining <= 0 else -(-remaining // 1000)

    def failed(self, who: str) -> int:
        """Count a failure; returns how long `who` must now wait."""
        failures_key = self._keys.console_signin_failures(who)
        with self._client.pipeline() as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, FAILURES_KEPT_SECONDS)
            failures = int(pipe.execute()[0])
        if failures <= FREE_FAILURES:
            return 0
        wait: int = min(2 ** (failures - FREE_FAILURES - 1), MAX_WAIT_SECONDS)
        self._client.set(self._keys.console_signin_wait(who), "1", ex=wait)
        return wait

    def succeeded(self, who: str) -> None:
        self._client.delete(
            self._keys.console_signin_failures(who), self._keys.console_signin_wait(who)
        )


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a form's CSRF token with the expected one."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def client_of(request: Request, trust_proxy: bool) -> str:
    """Whom the throttle counts: the peer address, or the first X-Forwarded-For hop when a
    trusted proxy sets it."""
    if trust_proxy:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.client.host if request.client else "unknown"


def is_https(request: Request, trust_proxy: bool) -> bool:
    """Whether the browser reached us over HTTPS (then cookies are Secure)."""
    if trust_proxy and request.headers.get("x-forwarded-proto", "").lower() == "https":
        return True
    return request.url.scheme == "https"
