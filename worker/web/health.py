"""GET /healthz: whether Redis answers, and what a load balancer's operator should know."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.

from typing import Any

import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from worker.runtime import current_runtime
from worker.state.redis_health import eviction_policy, eviction_warning, evicts


class Health(BaseModel):
    status: str = Field(
        description="ok; degraded (Redis answers but may evict our data, or the OAuth token "
        "endpoint is failing: see `warnings`); "
        "unavailable (Redis does not answer, with status 503)."
    )
    redis_maxmemory_policy: str | None = Field(
        default=None, description="Redis's maxmemory-policy; None when it cannot be read."
    )
    warnings: list[str] = Field(default_factory=list)


def add_health_route(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz() -> Any:
        """200 when Redis answers, else 503. A Redis that may evict our data is reported
        (status "degraded", a warning) but still answers 200: restarting or unrouting this
        process cannot fix Redis's configuration, and would only stop webhooks too."""
        client = current_runtime().redis
        try:
            client.ping()
        except redis.RedisError:
            down = Health(status="unavailable", warnings=["Redis does not answer"])
            return JSONResponse(down.model_dump(), status_code=503)
        return _answering_health(client)


def _answering_health(client: redis.Redis) -> Health:
    """The health of a Redis that answers: ok, or degraded with the warnings that say why."""
    try:
        policy = eviction_policy(client)
    except redis.RedisError:  # INFO refused (renamed by some managed services)
        policy = None
    warnings = []
    if evicts(policy):
        assert policy is not None
        warnings.append(eviction_warning(policy))
    # The workers' last failed OAuth token fetch, until one succeeds: requests wait for
    # it (none fails), and this says why.
    token_failure = _token_failure_warning(client)
    if token_failure is not None:
        warnings.append(token_failure)
    if warnings:
        return Health(status="degraded", redis_maxmemory_policy=policy, warnings=warnings)
    return Health(status="ok", redis_maxmemory_policy=policy)


def _token_failure_warning(client: redis.Redis) -> str | None:
    """The workers' last failed OAuth token fetch, if none has succeeded since."""
    from worker.tango.auth import last_token_failure

    try:
        failure = last_token_failure(client, current_runtime().keys)
    except redis.RedisError:
        return None
    if failure is None:
        return None
    # Statuses and reasons only: this route answers anyone, so the endpoint's address and
    # its error text are left to `tango-resend doctor` and the logs.
    return (
        f"Tango's OAuth token endpoint is failing ({failure.get('failures')} failed fetches "
        f"since {failure.get('since')}): resends wait and retry, none fails for it; run "
        "`tango-resend doctor` and check TANGO_TOKEN_URL and the client credentials"
    )
