"""Who a bearer token is: its name (`API_TOKENS`; `default` for API_TOKEN, `read` for
API_READ_TOKEN) and its role (`write` may read and act, `read` may only read)."""

from __future__ import annotations

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
    """The agent `given` is the token of, or None: the one place a presented token is
    resolved. Every token is compared, in constant time, whatever matched before, so the
    answer's timing tells nothing about any of them."""
    offered = given.encode()
    found: Identity | None = None
    for token in settings.named_tokens():
        if hmac.compare_digest(offered, token.token.get_secret_value().encode()) and not found:
            found = Identity(token.name, Role(token.role))
    return found


def role_for_token(settings: Settings, given: str) -> Role | None:
    """The role `given` grants, or None (see `identify`)."""
    identity = identify(settings, given)
    return identity.role if identity else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token if scheme == "Bearer" and token else None


def identify_authorization(settings: Settings, authorization: str | None) -> Identity | None:
    """The agent of an `Authorization: Bearer <token>` header, or None."""
    token = bearer_token(authorization)
    return None if token is None else identify(settings, token)


def role_for_authorization(settings: Settings, authorization: str | None) -> Role | None:
    """The role of an `Authorization: Bearer <token>` header, or None."""
    identity = identify_authorization(settings, authorization)
    return identity.role if identity else None
