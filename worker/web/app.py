"""The webhook receiver: signed HTTP triggers for resends, and a read-only view of records.

The webhook endpoint is a coroutine: signature, parsing and validation are CPU work done in
the event loop, and its one round trip to Redis (the create script, which stores the request
and queues its task together) is awaited on an asyncio client, so a storm of webhooks costs no
thread hop per request and a slow Redis stalls no other request. Other endpoints are plain
`def`s that FastAPI runs in its thread pool. The raw body is read (with a size cap) by an async
dependency, and its signature checked before anything is parsed.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run
# time, and they name a dependency built inside `_add_webhook_route`.

import asyncio
import gc
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import PlainTextResponse, Response
from kombu.exceptions import OperationalError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from worker.core.conditions import REDIS_OUTAGE_ERRORS, REDIS_UNREACHABLE, redis_error_detail
from worker.core.errors import RedisUnavailable
from worker.core.settings import Settings, get_settings
from worker.resend import origins
from worker.resend.producer import EnqueueError, Submission, submit_resend_async
from worker.resend.validation import InvalidResendRequest
from worker.runtime import AsyncCreate, current_runtime
from worker.state.metrics_export import build_registry
from worker.state.queries import as_shown
from worker.state.records import SubmissionOutcome
from worker.state.redis_durability import log_durability
from worker.state.redis_health import warn_if_evicting
from worker.web.api_docs import add_docs_routes
from worker.web.api_off import build_api_off_router
from worker.web.console import build_console_router, redis_unreachable_page
from worker.web.edge import PublicPortOnly, StrictTransportSecurity
from worker.web.forwarded import TrustedProxyHeaders, UntrustedProxyNotice
from worker.web.health import add_health_route
from worker.web.openapi import accepted, json_request_body, link
from worker.web.problems import HttpProblem, problem_responses, unavailable
from worker.web.problems import parse_json_object as _parse
from worker.web.problems import problem_response as _problem_response
from worker.web.request_body import capped_body
from worker.web.rest_api import build_api_router
from worker.web.schema import ResendFields
from worker.web.webhook_signature import REPLAY_WINDOW_SECONDS, SignatureError, WebhookVerifier

logger = logging.getLogger("tango_resend.web")


class ResendWebhook(ResendFields):
    """A resend request in Tango's own field names (the body of POST /webhooks/resends)."""


class Accepted(BaseModel):
    id: str
    status: str = Field(
        default="queued",
        description="A new request's state: `queued`, or `deferred` behind an earlier request "
        "of its order; for a redelivery or a merge, the state of the request named by `id` "
        '(README, "States").',
    )
    duplicate: bool = Field(
        description="True when this webhook-id was already accepted (a redelivery): the same "
        "id as the first time, nothing new queued."
    )
    coalesced: bool = Field(
        default=False,
        description="True when a new webhook was merged into an identical request of the "
        "order that is still pending: `id` is that request's, nothing new queued.",
    )
    recent: bool = Field(
        default=False,
        description="True when the order was sent to the same recipient within "
        "RESEND_RECENT_SECONDS: `id` is that sent request's (`status` `sent`, `duplicate` "
        "true), nothing new queued.",
    )


_PROBLEMS = problem_responses(
    {
        400: "The body is not JSON, or names a key twice in one object.",
        401: "Missing, invalid or stale signature.",
        413: "The body is larger than the limit (64 KiB by default).",
        415: "The body is not declared JSON (Content-Type: application/json).",
        422: "The body is not a valid resend request; `fields` names each problem.",
        503: "Redis or the broker cannot take the request now; retry later.",
    }
)


# Linked only where GET /resends/{request_id} exists: with the REST API (API_TOKEN).
_ACCEPTED_LINKS = accepted("Stored and queued.", {"ReadResend": link("readResend")})


@asynccontextmanager
async def _webhook_redis(app: FastAPI) -> AsyncIterator[None]:
    """The webhook route's asyncio Redis client, opened and closed with the event loop that
    serves it (asyncio connections cannot outlive their loop)."""
    app.state.create = AsyncCreate(get_settings())
    try:
        yield
    finally:
        create, app.state.create = app.state.create, None
        await create.aclose()


def create_app() -> FastAPI:
    """Build the receiver from this process's settings; refuses to run without a secret."""
    settings = get_settings()
    settings.require_webhook_secret()
    verifier = _verifier(settings)
    warn_if_evicting(current_runtime().redis)
    log_durability(current_runtime().redis)
    app = _bare_app(settings)
    _add_webhook_route(app, settings, verifier)
    add_health_route(app)
    _add_metrics_route(app, settings)
    if settings.api_enabled:
        app.include_router(build_api_router(settings))
        app.include_router(build_console_router(settings))
    else:
        app.include_router(build_api_off_router())
    _answer_redis_loss(app, settings)
    # Everything built so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise rescan it during webhook storms (tail latency).
    gc.freeze()
    return app


def _answer_redis_loss(app: FastAPI, settings: Settings) -> None:
    """Redis lost in the middle of any route: a 503 that says so (the console's own page,
    elsewhere a JSON problem with Retry-After), never a bare 500; logged as one condition."""

    async def redis_lost(request: Request, error: Exception) -> Response:
        REDIS_UNREACHABLE.report(f"web: {redis_error_detail(error)}")
        if request.url.path.startswith("/console") and settings.api_enabled:
            return redis_unreachable_page(settings, request)
        return _problem_response(request, unavailable("Redis is unreachable; retry later"))

    for kind in (*REDIS_OUTAGE_ERRORS, OperationalError, RedisUnavailable):
        app.add_exception_handler(kind, redis_lost)


def _version() -> str:
    try:
        return importlib.metadata.version("tango-resend")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout never installed
        return "0+unknown"


def _bare_app(settings: Settings) -> FastAPI:
    """The app with no route yet: its OpenAPI title, its Redis client's lifetime, every
    `HttpProblem` answered as a JSON problem, a client gone mid-body as one log line, and
    the edge (worker/web/edge.py, worker/web/forwarded.py)."""
    app = FastAPI(
        title="tango-resend",
        version=_version(),
        description="Signed webhooks that queue Tango order resends.",
        lifespan=_webhook_redis,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: ours serve them from
        # this origin (worker/web/api_docs.py).
        docs_url=None,
        redoc_url=None,
    )
    if settings.web_docs:
        add_docs_routes(app)
    app.add_exception_handler(HttpProblem, _problem_response)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)
    # The last added runs first: the client and scheme are settled before anything reads them.
    if settings.web_internal_port is not None:
        app.add_middleware(PublicPortOnly, internal_port=settings.web_internal_port)
    if settings.web_hsts_seconds:
        app.add_middleware(StrictTransportSecurity, max_age_seconds=settings.web_hsts_seconds)
    if settings.console_trust_proxy:
        app.add_middleware(TrustedProxyHeaders, hops=settings.trusted_proxy_hops)
    else:
        app.add_middleware(UntrustedProxyNotice)
    return app


def _client_gone(request: Request, _: Exception) -> Response:
    """A client that hung up (or was cut off by WEB_BODY_TIMEOUT_SECONDS) before its whole
    body arrived: nothing was done, nobody waits for the answer, one line says so."""
    client = request.client.host if request.client else "a client"
    logger.info(
        "%s went away before sending its whole body (%s %s); nothing done",
        client,
        request.method,
        request.url.path,
    )
    return Response(status_code=400)


def _add_webhook_route(app: FastAPI, settings: Settings, verifier: WebhookVerifier | None) -> None:
    # A webhook-id must be remembered as long as its signature could be replayed, whatever
    # RESEND_IDEMPOTENCY_TTL_SECONDS says; otherwise a captured webhook makes a new resend.
    webhook_id_ttl = max(settings.resend_idempotency_ttl_seconds, REPLAY_WINDOW_SECONDS)
    raw_body = capped_body(settings.webhook_max_body_bytes, json_only=True)

    @app.post(
        "/webhooks/resends",
        status_code=202,
        response_model=Accepted,
        operation_id="receiveResend",
        responses={**_PROBLEMS, **_ACCEPTED_LINKS} if settings.api_enabled else _PROBLEMS,
        openapi_extra=json_request_body(ResendWebhook),
    )
    async def receive_resend(
        request: Request,
        body: Annotated[bytes, Depends(raw_body)],
        webhook_id: Annotated[str | None, Header(alias="webhook-id")] = None,
        webhook_timestamp: Annotated[str | None, Header(alias="webhook-timestamp")] = None,
        webhook_signature: Annotated[str | None, Header(alias="webhook-signature")] = None,
    ) -> Accepted:
        """Queue a resend. Answers 202 only once the request is stored and queued."""
        if verifier is not None:
            headers = {
                "webhook-id": webhook_id or "",
                "webhook-timestamp": webhook_timestamp or "",
                "webhook-signature": webhook_signature or "",
            }
            webhook_id = _verified_webhook_id(verifier, body, headers)
        return await _accept(request, _parse(body), webhook_id, webhook_id_ttl)


def _verified_webhook_id(verifier: WebhookVerifier, body: bytes, headers: dict[str, str]) -> str:
    try:
        return verifier.verify(body, headers)
    except SignatureError as error:
        raise HttpProblem(401, "invalid_signature", str(error)) from None


async def _accept(
    request: Request, fields: dict[str, Any], webhook_id: str | None, webhook_id_ttl: int
) -> Accepted:
    """Store and queue the webhook's request, keyed on its webhook-id (when it has one)."""
    try:
        submission = await submit_resend_async(
            fields,
            idempotency_key=f"webhook:{webhook_id}" if webhook_id else None,
            idempotency_ttl_seconds=webhook_id_ttl,
            origin=origins.webhook(webhook_id),
            create=getattr(request.app.state, "create", None),
        )
    except InvalidResendRequest as error:
        raise HttpProblem(422, "invalid_request", str(error), fields=error.errors) from None
    except EnqueueError as error:
        # Refused with a 503 the sender retries; logged as one condition, not once a webhook.
        REDIS_UNREACHABLE.report(f"web: a webhook refused, not stored: {error}")
        raise unavailable("the request could not be stored; retry later") from None
    recent = submission.outcome == SubmissionOutcome.RECENT
    return Accepted(
        id=submission.request_id,
        status=await _answer_status(submission),
        duplicate=submission.outcome == SubmissionOutcome.IDEMPOTENT or recent,
        coalesced=submission.outcome == SubmissionOutcome.MERGED,
        recent=recent,
    )


async def _answer_status(submission: Submission) -> str:
    """The state the 202 names: `sent` for the request the recent-resend guard answered with;
    a new request's, `queued` or `deferred` behind an earlier one of its order; else the
    state of the request a redelivery or a merge named."""
    if submission.outcome == SubmissionOutcome.RECENT:
        return "sent"
    if submission.created:
        return "deferred" if submission.waiting_for_turn else "queued"
    return await _shown_status(submission.request_id)


async def _shown_status(request_id: str) -> str:
    """The state of the request a webhook was merged into (or a redelivery named), as every
    interface shows it; `queued` if it cannot be read now (the 202 stands: it is stored)."""

    def read() -> str:
        runtime = current_runtime()
        record = runtime.records.get(request_id)
        return "queued" if record is None else as_shown(runtime, record).status.value

    try:
        return await asyncio.to_thread(read)
    except redis.RedisError:
        return "queued"


def _add_metrics_route(app: FastAPI, settings: Settings) -> None:
    runtime = current_runtime()
    registry = build_registry(runtime.redis, runtime.keys, settings.resend_queue, runtime.outage)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """The fleet's Prometheus metrics (counters are fleet-wide, kept in Redis)."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _verifier(settings: Settings) -> WebhookVerifier | None:
    if settings.webhook_secret is None:
        logger.warning(
            "WEBHOOK_ALLOW_UNSIGNED=true: accepting UNSIGNED webhooks. Anyone who can reach "
            "this port can trigger resends. Never run like this outside local development."
        )
        return None
    return WebhookVerifier(settings.webhook_secret.get_secret_value())
