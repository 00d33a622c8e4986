"""Who a bearer token is: `API_TOKEN` may read and act, `API_READ_TOKEN` may only read.

`resolve_token` is the one place a presented token is matched: against every configured token,
each compared in constant time and all of them always, so neither the answer's timing nor
which token matched tells anything. A list of named tokens plugs in at `configured_tokens`.
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
class TokenHolder:
    """Whom a token stands for: its name (the setting that holds it) and its role."""

    name: str
    role: Role


def configured_tokens(settings: Settings) -> list[tuple[TokenHolder, str]]:
    """Every bearer token this process accepts, with whom it stands for."""
    tokens: list[tuple[TokenHolder, str]] = []
    if settings.api_token is not None:
        tokens.append((TokenHolder("API_TOKEN", Role.WRITE), settings.api_token.get_secret_value()))
    if settings.api_read_token is not None:
        read = settings.api_read_token.get_secret_value()
        tokens.append((TokenHolder("API_READ_TOKEN", Role.READ), read))
    return tokens


def resolve_token(settings: Settings, presented: str) -> TokenHolder | None:
    """Whom `presented` stands for, or None. Digests of equal length are compared, every one
    of them, so the time taken depends on neither the token nor which one matched."""
    offered = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found: TokenHolder | None = None
    for holder, token in configured_tokens(settings):
        expected = hashlib.sha256(token.encode()).digest()
        if hmac.compare_digest(offered, expected) and found is None:
            found = holder
    return found


def role_for_token(settings: Settings, given: str) -> Role | None:
    """The role `given` grants, or None (`resolve_token`'s role)."""
    holder = resolve_token(settings, given)
    return None if holder is None else holder.role


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def role_for_authorization(settings: Settings, authorization: str | None) -> Role | None:
    """The role of an `Authorization: Bearer <token>` header, or None."""
    token = bearer_token(authorization)
    return None if token is None else role_for_token(settings, token)
