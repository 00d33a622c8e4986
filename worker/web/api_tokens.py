"""Who a bearer token is: its name (`API_TOKENS`; `default` for API_TOKEN, `read` for
API_READ_TOKEN) and its role (`write` may read and act, `read` may only read).

`identify` is the one place a presented token is matched: against every configured token,
digests of equal length compared in constant time, all of them always, so neither the
answer's timing nor which token matched tells anything.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from worker.core.settings import Settings


class Role(StrEnum):
    WRITE = "write"
    READ = "read"

    @property
    def may_act(self) -> bool:
        return self is Role.WRITE


@dataclass(frozen=True)
class Identity:
    """The agent a token names: the audit trail says `name`, `role` says what it may do."""

    name: str
    role: Role


def identify(settings: Settings, given: str) -> Identity | None:
    """The agent `given` is the token of, or None. SHA-256 digests are compared, so that
    every comparison takes the same time whatever the lengths, and every token is compared
    whatever matched before."""
    offered = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    found: Identity | None = None
    for token in settings.named_tokens():
        expected = hashlib.sha256(token.token.get_secret_value().encode()).digest()
        if hmac.compare_digest(offered, expected) and found is None:
            found = Identity(token.name, Role(token.role))
    return found


def role_for_token(settings: Settings, given: str) -> Role | None:
    """The role `given` grants, or None (see `identify`)."""
    identity = identify(settings, given)
    return identity.role if identity else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any case, as
    HTTP has it), or None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def identify_authorization(settings: Settings, authorization: str | None) -> Identity | None:
    """The agent of an `Authorization: Bearer <token>` header, or None."""
    token = bearer_token(authorization)
    return None if token is None else identify(settings, token)


def role_for_authorization(settings: Settings, authorization: str | None) -> Role | None:
    """The role of an `Authorization: Bearer <token>` header, or None."""
    identity = identify_authorization(settings, authorization)
    return identity.role if identity else None
