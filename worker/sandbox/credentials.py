"""Who may call the sandbox: HTTP Basic platform keys and issued OAuth bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
from collections.abc import Callable

from .models import SandboxConfig


def same_secret(given: str, expected: str) -> bool:
    """Compares two secrets in constant time.

    Args:
        given: What the client sent.
        expected: What the sandbox is configured with.

    Returns:
        True when they are equal.
    """
    # Constant-time so the sandbox never teaches a bad habit by example.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def decode_basic(credentials: str) -> tuple[str, str] | None:
    """Decodes the part of an HTTP Basic header after ``Basic``.

    Args:
        credentials: Base64 of ``user:password``.

    Returns:
        ``(user, password)``, or None when it is not valid Basic credentials.
    """
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class Credentials:
    """Checks ``Authorization`` headers and issues expiring bearer tokens.

    Expiry is judged on the sandbox clock, so moving the clock moves expiry too.
    """

    def __init__(self, config: SandboxConfig, now_ms: Callable[[], int]) -> None:
        """Creates an empty token store.

        Args:
            config: Holds the accepted platform and client credentials.
            now_ms: The sandbox clock in epoch milliseconds.
        """
        self._config = config
        self._now_ms = now_ms
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}
        self._requests = 0

    def classify(self, authorization: str | None) -> str:
        """Classifies an ``Authorization`` header.

        Args:
            authorization: The raw header value, or None.

        Returns:
            ``basic`` or ``bearer`` when valid, ``none`` when absent, else ``invalid``.
        """
        if not authorization or not authorization.strip():
            return "none"
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            pair = decode_basic(credentials)
            valid = (
                pair is not None
                and same_secret(pair[0], self._config.platform_name)
                and same_secret(pair[1], self._config.platform_key)
            )
            return "basic" if valid else "invalid"
        if scheme.lower() == "bearer":
            with self._lock:
                expires_ms = self._tokens.get(credentials.strip())
            valid = expires_ms is not None and self._now_ms() < expires_ms
            return "bearer" if valid else "invalid"
        return "invalid"

    def count_request(self) -> None:
        """Counts one call to the token route, whatever its outcome."""
        with self._lock:
            self._requests += 1

    def issue(self, client_id: str, client_secret: str) -> str | None:
        """Issues a bearer token for valid client credentials.

        Args:
            client_id: OAuth client id.
            client_secret: OAuth client secret.

        Returns:
            The new token, or None when the credentials are wrong.
        """
        valid = same_secret(client_id, self._config.client_id) and same_secret(
            client_secret, self._config.client_secret
        )
        if not valid:
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self._now_ms() + self._config.token_ttl_seconds * 1000
        return token

    def requests(self) -> int:
        """Returns how many token requests arrived since the last reset."""
        with self._lock:
            return self._requests

    def reset(self) -> None:
        """Forgets every token and the request count."""
        with self._lock:
            self._tokens.clear()
            self._requests = 0
