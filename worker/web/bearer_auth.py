"""The REST API's door: a bearer token, its role, and a throttle on whoever guesses.

Every route of the REST API depends on `authorizer(settings, role)`. A client that keeps
presenting wrong tokens is made to wait, and globally guessing is capped
(worker/web/auth_throttle.py): a try made while waiting gets 429 with `Retry-After`, and its
token is not looked at.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations at run time.

import logging
from typing import Annotated, Any

import redis
from fastapi import Header, Request

from worker.core.settings import Settings
from worker.runtime import current_runtime
from worker.web.api_tokens import Identity, Role, bearer_token, identify
from worker.web.auth_throttle import FailureThrottle, bearer_keys
from worker.web.problems import HttpProblem, unavailable

logger = logging.getLogger("tango_resend.api")


def authorizer(settings: Settings, needed: Role) -> Any:
    """A FastAPI dependency: the caller's identity (its name and role), or the problem refusing
    it (401, 403, 429)."""

    def authorize(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Identity:
        return require_identity(settings, request, authorization, needed)

    return authorize


def require_identity(
    settings: Settings, request: Request, authorization: str | None, needed: Role
) -> Identity:
    """Whom the request's bearer token names, if it may do what needs `needed`."""
    who = request.client.host if request.client else "unknown"
    runtime = current_runtime()
    throttle = FailureThrottle(
        runtime.redis, runtime.keys, bearer_keys(runtime.keys), settings.auth_failures_per_minute
    )
    try:
        holder = _holder(settings, throttle, who, authorization)
    except redis.RedisError:
        # Without the throttle's counts, guesses would go unchecked: refuse until Redis is back.
        raise unavailable("tokens cannot be checked now; retry later") from None
    if holder is None:
        raise HttpProblem(
            401,
            "unauthorized",
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if needed is Role.WRITE and not holder.role.may_act:
        raise HttpProblem(403, "forbidden", "this token may only read")
    return holder


def _holder(
    settings: Settings, throttle: FailureThrottle, who: str, authorization: str | None
) -> Identity | None:
    wait = throttle.wait_seconds(who)
    if wait:
        raise HttpProblem(
            429,
            "too_many_attempts",
            f"too many invalid tokens from this client, or from everyone: retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    token = bearer_token(authorization)
    holder = None if token is None else identify(settings, token)
    if holder is not None:
        throttle.succeeded(who)
    elif token is not None:  # a missing header is no guess
        wait = throttle.failed(who)
        if wait:
            logger.warning("invalid bearer tokens from %s: it must wait %d s", who, wait)
    return holder
