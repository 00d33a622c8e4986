"""The REST API's shapes: request and answer models, problem descriptions, query parameters.

What `/openapi.json` says of each route (worker/web/rest_api.py uses them); kept apart from the
routes so that each module does one job.
"""

# No `from __future__ import annotations`: FastAPI and pydantic read these annotations at run time.

from typing import Any, Literal

from pydantic import BaseModel, Field

from worker.state.records import ResendStatus
from worker.web.openapi import link
from worker.web.problems import problem_responses
from worker.web.schema import ResendFields

MAX_PAGE = 500
DEFAULT_PAGE = 50


class ResendCreate(ResendFields):
    """The body of POST /resends: Tango's field names, and a key of the caller's."""

    idempotencyKey: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The same key within RESEND_IDEMPOTENCY_TTL_SECONDS (24 h) answers the "
        "first request's id, `duplicate: true`, and queues nothing.",
    )
    force: bool = Field(
        default=False,
        description="Send even if the order was sent to the same recipient within "
        "RESEND_RECENT_SECONDS (the recent-resend guard).",
    )


class Created(BaseModel):
    id: str
    status: str = Field(
        description="A new request's state: `queued`, or `deferred` behind an earlier request "
        "of its order; for a duplicate or a merge, that request's current state."
    )
    duplicate: bool = Field(description="True when the idempotency key was seen before.")
    coalesced: bool = Field(
        description="True when an identical request of the order was still pending: `id` is "
        "that request's, nothing new queued."
    )
    recent: bool = Field(
        default=False,
        description="True when the order was sent to the same recipient within "
        "RESEND_RECENT_SECONDS: `id` is that sent request's (`status` `sent`, `duplicate` "
        "true), nothing new queued. Pass `force: true` to send anyway.",
    )


class ResendPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null when there is none."
    )


_CALLERS = Field(
    description="How many callers share the request: the one that created it and each "
    "identical request merged into it. A cancel cancels it for all of them."
)


class CancelAnswer(BaseModel):
    result: Literal["cancelled"]
    callers: int = _CALLERS


class CancelRefused(BaseModel):
    result: Literal["in_flight", "sent", "failed", "cancelled"]
    callers: int = _CALLERS


class RetryAnswer(BaseModel):
    id: str
    retry_of: str
    recent: bool = Field(
        default=False,
        description="True when the order was sent to the same recipient within "
        "RESEND_RECENT_SECONDS: `id` is that sent request's and nothing was queued; "
        "`?force=true` retries anyway.",
    )


class OrderResends(BaseModel):
    referenceOrderID: str
    requests: list[dict[str, Any]] = Field(
        description="Every request of the order, oldest first, each with its `attempt_log` "
        "(every call to Tango, its HTTP status and Tango's request id)."
    )


PROBLEM_DESCRIPTIONS = {
    400: "The body is not JSON, or names a key twice in one object.",
    401: "Missing or invalid bearer token.",
    403: "The read-only token (API_READ_TOKEN) may not do this.",
    404: "No such request (unknown, or expired).",
    409: "Too late: the request is not in a state that allows this.",
    413: "The body is larger than the limit.",
    415: "The body is not declared JSON (Content-Type: application/json).",
    422: "Invalid input; `fields` names each problem.",
    429: "Too many invalid tokens from this client (or from everyone): retry after "
    "`Retry-After` seconds.",
    503: "Redis or the broker cannot answer now; retry after `Retry-After` seconds.",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The routes' problem answers: `statuses`, and the throttle's 429 that every route has."""
    return problem_responses(
        {status: PROBLEM_DESCRIPTIONS[status] for status in sorted({*statuses, 429})}
    )


CREATED_LINKS = {
    "ReadResend": link("readResend"),
    "CancelResend": link("cancelResend"),
    "RetryResend": link("retryResend"),
}

LIST_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "order",
        "in": "query",
        "required": False,
        "description": "Only this order's requests (Tango's referenceOrderID).",
        "schema": {"type": "string", "pattern": r"^RA[0-9]{6}-[0-9]{1,10}-[0-9]{1,10}$"},
    },
    {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "Only requests in this state, as stored.",
        "schema": {"type": "string", "enum": [status.value for status in ResendStatus]},
    },
    {
        "name": "since",
        "in": "query",
        "required": False,
        "description": "Only requests created within this long, e.g. 90s, 15m, 2h, 1d, 1h30m.",
        "schema": {"type": "string", "examples": ["1h"]},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"At most this many items (default {DEFAULT_PAGE}).",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "The `next_cursor` of the previous page.",
        "schema": {"type": "string"},
    },
]
