"""The webhook receiver: signed HTTP triggers for resends, and a read-only view of records.

Endpoints that enqueue are plain `def`s, so FastAPI runs them in its thread pool and a slow
Redis blocks a thread, never the event loop. The raw body is read (with a size cap) by an async
dependency, and its signature checked before anything is parsed.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run
# time, and they name a dependency defined inside `create_app`.

import hmac
import json
import logging
from typing import Annotated, Any, Literal

import redis
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from worker.metrics import build_registry
from worker.producer import EnqueueError, submit_resend
from worker.redis_health import eviction_policy, eviction_warning, evicts, warn_if_evicting
from worker.runtime import current_runtime
from worker.settings import Settings, get_settings
from worker.validation import InvalidResendRequest
from worker.webhook_signature import REPLAY_WINDOW_SECONDS, SignatureError, WebhookVerifier

logger = logging.getLogger("tango_resend.web")


class ResendWebhook(BaseModel):
    """A resend request in Tango's own field names (the body of POST /webhooks/resends)."""

    model_config = ConfigDict(extra="forbid")

    # Field names are Tango's own, so senders can forward Tango-shaped payloads unchanged.
    # The schema states the shapes `worker.validation` enforces; it checks more than a schema
    # can say (a deliverable-looking email, a phone number that exists), and is what decides.
    referenceOrderID: str = Field(
        examples=["RA180426-1401-64"], pattern=r"^RA[0-9]{6}-[0-9]{1,10}-[0-9]{1,10}$"
    )
    newEmail: str | None = Field(default=None, examples=["pat@example.com"], max_length=254)
    newMobile: str | None = Field(
        default=None, examples=["+14155550123"], pattern=r"^\+[1-9][0-9]{7,14}$"
    )
    newEtid: str | None = Field(default=None, examples=["E000000"], pattern=r"^E[0-9]{6}$")
    newDeliveryMethod: Literal["EMAIL", "PHONE", "NONE"] | None = None


class Accepted(BaseModel):
    id: str
    status: str = "queued"
    duplicate: bool = Field(
        description="True when this webhook-id was already accepted (a redelivery): the same "
        "id as the first time, nothing new queued."
    )
    coalesced: bool = Field(
        default=False,
        description="True when a new webhook was merged into an identical request of the "
        "order that is still pending: `id` is that request's, nothing new queued.",
    )


class Problem(BaseModel):
    error: str
    message: str
    fields: dict[str, str] | None = None


class Health(BaseModel):
    status: str = Field(
        description="ok; degraded (Redis answers but may evict our data, see `warnings`); "
        "unavailable (Redis does not answer, with status 503)."
    )
    redis_maxmemory_policy: str | None = Field(
        default=None, description="Redis's maxmemory-policy; None when it cannot be read."
    )
    warnings: list[str] = Field(default_factory=list)


class HttpProblem(Exception):
    """Raised inside a request to answer with a JSON problem."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.fields, self.headers = fields, headers


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description}
    for status, description in {
        400: "The body is not JSON, or names a key twice in one object.",
        401: "Missing, invalid or stale signature.",
        413: "The body is larger than the limit (64 KiB by default).",
        422: "The body is not a valid resend request; `fields` names each problem.",
        503: "Redis or the broker cannot take the request now; retry later.",
    }.items()
}


# OpenAPI links: the id a 202 answers with reads back at GET /resends/{request_id}, so clients
# (and stateful fuzzers) can follow a request from its webhook to its record.
_ACCEPTED_LINKS: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Stored and queued.",
        "links": {
            "ReadResend": {
                "operationId": "readResend",
                "parameters": {"request_id": "$response.body#/id"},
            }
        },
    }
}


def create_app() -> FastAPI:
    """Build the receiver from this process's settings; refuses to run without a secret."""
    settings = get_settings()
    settings.require_webhook_secret()
    verifier = _verifier(settings)
    warn_if_evicting(current_runtime().redis)
    # A webhook-id must be remembered as long as its signature could be replayed, whatever
    # RESEND_IDEMPOTENCY_TTL_SECONDS says; otherwise a captured webhook makes a new resend.
    webhook_id_ttl = max(settings.resend_idempotency_ttl_seconds, REPLAY_WINDOW_SECONDS)
    app = FastAPI(
        title="tango-resend",
        version="0.1.0",
        description="Signed webhooks that queue Tango order resends.",
    )
    app.add_exception_handler(HttpProblem, _problem_response)  # type: ignore[arg-type]
    limit = settings.webhook_max_body_bytes

    async def raw_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise HttpProblem(413, "body_too_large", f"the body may hold at most {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:  # a sender without Content-Length is cut off here
                raise HttpProblem(413, "body_too_large", f"the body may hold at most {limit} bytes")
        return bytes(body)

    @app.post(
        "/webhooks/resends",
        status_code=202,
        response_model=Accepted,
        operation_id="receiveResend",
        responses={**_PROBLEMS, **_ACCEPTED_LINKS} if settings.api_token else _PROBLEMS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ResendWebhook.model_json_schema()}},
            }
        },
    )
    def receive_resend(
        body: Annotated[bytes, Depends(raw_body)],
        webhook_id: Annotated[str | None, Header(alias="webhook-id")] = None,
        webhook_timestamp: Annotated[str | None, Header(alias="webhook-timestamp")] = None,
        webhook_signature: Annotated[str | None, Header(alias="webhook-signature")] = None,
    ) -> Accepted:
        """Queue a resend. Answers 202 only once the request is stored and queued."""
        headers = {
            "webhook-id": webhook_id or "",
            "webhook-timestamp": webhook_timestamp or "",
            "webhook-signature": webhook_signature or "",
        }
        if verifier is not None:
            try:
                webhook_id = verifier.verify(body, headers)
            except SignatureError as error:
                raise HttpProblem(401, "invalid_signature", str(error)) from None
        fields = _parse(body)
        key = f"webhook:{webhook_id}" if webhook_id else None
        try:
            submission = submit_resend(
                fields, idempotency_key=key, idempotency_ttl_seconds=webhook_id_ttl
            )
        except InvalidResendRequest as error:
            raise HttpProblem(422, "invalid_request", str(error), fields=error.errors) from None
        except EnqueueError as error:
            logger.warning("webhook refused, not stored: %s", error)
            raise HttpProblem(
                503,
                "unavailable",
                "the request could not be stored; retry later",
                headers={"Retry-After": "5"},
            ) from None
        logger.info(
            "webhook id=%s accepted as request=%s (%s)",
            webhook_id,
            submission.request_id,
            submission.outcome,
        )
        return Accepted(
            id=submission.request_id,
            duplicate=submission.outcome == "idempotent",
            coalesced=submission.outcome == "merged",
        )

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
        try:
            policy = eviction_policy(client)
        except redis.RedisError:  # INFO refused (renamed by some managed services)
            policy = None
        if evicts(policy):
            assert policy is not None
            warning = eviction_warning(policy)
            return Health(status="degraded", redis_maxmemory_policy=policy, warnings=[warning])
        return Health(status="ok", redis_maxmemory_policy=policy)

    registry = build_registry(
        current_runtime().redis, current_runtime().keys, settings.resend_queue
    )

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The fleet's Prometheus metrics (counters are fleet-wide, kept in Redis)."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if settings.api_token is not None:
        _add_record_route(app, settings.api_token.get_secret_value())
    return app


def _add_record_route(app: FastAPI, api_token: str) -> None:
    expected = f"Bearer {api_token}".encode()

    @app.get(
        "/resends/{request_id}",
        operation_id="readResend",
        responses={401: {"model": Problem}, 404: {"model": Problem}},
    )
    def read_resend(
        request_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        """A request's record (needs `Authorization: Bearer <API_TOKEN>`)."""
        given = (authorization or "").encode()
        if not hmac.compare_digest(given, expected):
            raise HttpProblem(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            record = current_runtime().records.get(request_id)
        except redis.RedisError:
            raise HttpProblem(503, "unavailable", "records cannot be read now") from None
        if record is None:
            raise HttpProblem(404, "not_found", "no such request (unknown or expired)")
        return record.model_dump(mode="json")


def _verifier(settings: Settings) -> WebhookVerifier | None:
    if settings.webhook_secret is None:
        logger.warning(
            "WEBHOOK_ALLOW_UNSIGNED=true: accepting UNSIGNED webhooks. Anyone who can reach "
            "this port can trigger resends. Never run like this outside local development."
        )
        return None
    return WebhookVerifier(settings.webhook_secret.get_secret_value())


class _DuplicateKey(ValueError):
    """Raised while parsing when one JSON object names a key twice."""


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers disagree on which of two equal keys wins (Python's keeps the last, others
    # the first), so a signed body could mean one request to its sender and another to us.
    parsed = dict(pairs)
    if len(parsed) != len(pairs):
        raise _DuplicateKey
    return parsed


def _parse(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey:
        # The key is not echoed: like a refused value, it is the sender's data.
        raise HttpProblem(
            400, "malformed_json", "the body names a key twice in one JSON object"
        ) from None
    except (ValueError, RecursionError):
        raise HttpProblem(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise HttpProblem(
            422,
            "invalid_request",
            "the body must be a JSON object",
            fields={"body": "must be a JSON object"},
        )
    return parsed


def _problem_response(_: Request, problem: HttpProblem) -> JSONResponse:
    content = Problem(error=problem.error, message=problem.message, fields=problem.fields)
    return JSONResponse(
        content.model_dump(exclude_none=True), status_code=problem.status, headers=problem.headers
    )
