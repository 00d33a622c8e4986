"""Who a token is: `API_TOKEN` may read and act, `API_READ_TOKEN` may only read."""

from __future__ import annotations

import hmac
from enum import StrEnum

from worker.core.settings import Settings


class Role(StrEnum):
    WRITE = "write"
    READ = "read"

    @property
    def may_act(self) -> bool:
        return self is Role.WRITE


def role_for_token(settings: Settings, given: str) -> Role | None:
    """The role `given` grants, or None. Both tokens are compared in constant time, always,
    so the answer's timing tells nothing about either."""
    offered = given.encode()
    write = settings.api_token.get_secret_value().encode() if settings.api_token else None
    read = settings.api_read_token.get_secret_value().encode() if settings.api_read_token else None
    is_write = write is not None and hmac.compare_digest(offered, write)
    is_read = read is not None and hmac.compare_digest(offered, read)
    if is_write:
        return Role.WRITE
    return Role.READ if is_read else None


def role_for_authorization(settings: Settings, authorization: str | None) -> Role | None:
    """The role of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != "Bearer" or not token:
        return None
    return role_for_token(settings, token)
