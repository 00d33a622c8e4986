"""The REST API: resends for services not written in Python, behind a bearer token.

Mounted by `worker.web.app.create_app` only when `API_TOKEN` is set. `API_TOKEN` may do
everything; `API_READ_TOKEN` only the GETs (403 on the rest). Every refusal is a `Problem`
(`worker/web/problems.py`), as on the webhook route; bad input is a 422 whose `fields` name
each problem with the same messages as the Python API and the console.

Endpoints that touch Redis are plain `def`s: FastAPI runs them in its thread pool.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.

import logging
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from worker.core.settings import Settings
from worker.resend import origins
from worker.resend.cancellation import cancel_resend_detailed
from worker.resend.producer import EnqueueError, RedisUnavailable, get_resend, submit_resend
from worker.resend.retry import NotRetryable, retry_resend
from worker.resend.validation import InvalidResendRequest
from worker.runtime import current_runtime
from worker.state.queries import as_shown, order_history, shown_records
from worker.state.record_model import is_request_id
from worker.state.record_pages import InvalidCursor, decode_cursor, page_requests, parse_since
from worker.state.records import CancelResult, ResendStatus, SubmissionOutcome
from worker.tango.ids import REFERENCE_ORDER_ID
from worker.web.api_schema import (
    CREATED_LINKS,
    DEFAULT_PAGE,
    LIST_PARAMETERS,
    MAX_PAGE,
    CancelAnswer,
    CancelRefused,
    Created,
    OrderResends,
    ResendCreate,
    ResendPage,
    RetryAnswer,
    problems,
)
from worker.web.api_tokens import Identity, Role
from worker.web.bearer_auth import authorizer
from worker.web.openapi import accepted, json_request_body, link
from worker.web.problems import HttpProblem, parse_json_object, unavailable
from worker.web.request_body import capped_body

logger = logging.getLogger("tango_resend.api")

# Keys of the API's callers live apart from the Python API's, the webhooks' (`webhook:`) and
# the retries' (`retry-of:`): a caller cannot take over, or be handed, another's request.
IDEMPOTENCY_PREFIX = "api:"
ORDER_ID_MESSAGE = "must look like RA180426-1401-64 (RA, 6 digits, -, digits, -, digits)"


def build_api_router(settings: Settings) -> APIRouter:
    """The REST API's routes, with their authentication."""
    router = APIRouter()
    reader = Depends(authorizer(settings, Role.READ))
    writer = Depends(authorizer(settings, Role.WRITE))
    Writer = Annotated[Identity, writer]
    body = Depends(capped_body(settings.webhook_max_body_bytes, json_only=True))
    ttl = settings.resend_idempotency_ttl_seconds

    @router.post(
        "/resends",
        status_code=202,
        response_model=Created,
        operation_id="createResend",
        responses={
            **accepted("Stored and queued.", CREATED_LINKS),
            **problems(400, 401, 403, 413, 415, 422, 503),
        },
        openapi_extra=json_request_body(ResendCreate),
    )
    def create_resend(raw: Annotated[bytes, body], who: Writer) -> Created:
        """Queue a resend. Answers 202 only once the request is stored and queued."""
        return _create(parse_json_object(raw), ttl, origins.api(who.name))

    @router.get(
        "/resends",
        response_model=ResendPage,
        operation_id="listResends",
        dependencies=[reader],
        responses=problems(401, 422, 503),
        openapi_extra={"parameters": LIST_PARAMETERS},
    )
    def list_resends(request: Request) -> ResendPage:
        """Requests newest first, a page at a time (`next_cursor`), filtered."""
        return _list(dict(request.query_params))

    @router.get(
        "/resends/{request_id}",
        operation_id="readResend",
        dependencies=[reader],
        responses=problems(401, 404, 503),
    )
    def read_resend(request_id: str) -> dict[str, Any]:
        """A request's record."""
        _require_request_id(request_id)
        try:
            record = current_runtime().records.get(request_id)
            shown = None if record is None else as_shown(current_runtime(), record)
        except redis.RedisError:
            raise HttpProblem(503, "unavailable", "records cannot be read now") from None
        if shown is None:
            raise _not_found()
        return shown.model_dump(mode="json")

    @router.post(
        "/resends/{request_id}/cancel",
        response_model=CancelAnswer,
        operation_id="cancelResend",
        responses={409: {"model": CancelRefused}, **problems(401, 403, 404, 503)},
    )
    def cancel(request_id: str, who: Writer) -> Any:
        """Cancel a queued or deferred request before it is sent."""
        return _cancel(request_id, origins.api(who.name))

    @router.post(
        "/resends/{request_id}/retry",
        status_code=202,
        response_model=RetryAnswer,
        operation_id="retryResend",
        responses={
            **accepted(
                "Queued again as a new request (or the first retry's id).",
                {"ReadRetry": link("readResend")},
            ),
            **problems(401, 403, 404, 409, 503),
        },
    )
    def retry(request_id: str, who: Writer, force: bool = False) -> RetryAnswer:
        """Queue a failed request again, once: asking again answers the same id."""
        return _retry(request_id, origins.api(who.name), force)

    @router.get(
        "/orders/{referenceOrderID}/resends",
        response_model=OrderResends,
        operation_id="listOrderResends",
        dependencies=[reader],
        responses=problems(401, 422, 503),
    )
    def order_resends(referenceOrderID: str) -> OrderResends:
        """Every request of an order and every call to Tango for it, oldest first."""
        return _order(referenceOrderID)

    return router


def _not_found() -> HttpProblem:
    return HttpProblem(404, "not_found", "no such request (unknown or expired)")


def _require_request_id(request_id: str) -> None:
    """An id from the URL is checked before any use (a lookup, a log line)."""
    if not is_request_id(request_id):
        raise _not_found()


def _invalid(fields: dict[str, str]) -> HttpProblem:
    details = "; ".join(f"{name}: {why}" for name, why in fields.items())
    return HttpProblem(422, "invalid_request", f"invalid request: {details}", fields=fields)


def _create(fields: dict[str, Any], idempotency_ttl: int, origin: str) -> Created:
    key = fields.pop("idempotencyKey", None)
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 255):
        raise _invalid({"idempotencyKey": "must be text of 1 to 255 characters"})
    force = fields.pop("force", False)
    if not isinstance(force, bool):
        raise _invalid({"force": "must be true or false"})
    try:
        submission = submit_resend(
            fields,
            idempotency_key=key,
            idempotency_namespace=IDEMPOTENCY_PREFIX,
            idempotency_ttl_seconds=idempotency_ttl,
            origin=origin,
            force=force,
        )
    except InvalidResendRequest as error:
        renamed = {
            ("idempotencyKey" if k == "idempotency_key" else k): v for k, v in error.errors.items()
        }
        raise _invalid(renamed) from None
    except EnqueueError as error:
        logger.warning("API resend refused, not stored: %s", error)
        raise unavailable("the request could not be stored; retry later") from None
    status = "deferred" if submission.waiting_for_turn else "queued"
    if submission.outcome == SubmissionOutcome.RECENT:
        status = "sent"  # the guard answers only with a request that was sent
    elif not submission.created:
        status = _current_status(submission.request_id)
    return Created(
        id=submission.request_id,
        status=status,
        duplicate=submission.outcome in (SubmissionOutcome.IDEMPOTENT, SubmissionOutcome.RECENT),
        coalesced=submission.outcome == SubmissionOutcome.MERGED,
        recent=submission.outcome == SubmissionOutcome.RECENT,
    )


def _current_status(request_id: str) -> str:
    try:
        record = get_resend(request_id)
        return "queued" if record is None else as_shown(current_runtime(), record).status.value
    except (RedisUnavailable, redis.RedisError):
        return "queued"


def _list(query: dict[str, str]) -> ResendPage:
    errors: dict[str, str] = {}
    order = query.get("order")
    if order is not None and not REFERENCE_ORDER_ID.fullmatch(order):
        errors["order"] = ORDER_ID_MESSAGE
    status = None
    if query.get("status") is not None:
        try:
            status = ResendStatus(query["status"])
        except ValueError:
            errors["status"] = f"must be one of {', '.join(s.value for s in ResendStatus)}"
    since = None
    if query.get("since") is not None:
        try:
            since = parse_since(query["since"])
        except ValueError as error:
            errors["since"] = str(error)
    limit = _limit(query.get("limit"), errors)
    after = None
    if query.get("cursor") is not None:
        try:
            after = decode_cursor(query["cursor"])
        except InvalidCursor:
            errors["cursor"] = "is not a cursor this API gave"
    if errors:
        raise _invalid(errors)
    try:
        page = page_requests(
            current_runtime(), order=order, status=status, since=since, limit=limit, after=after
        )
        shown = shown_records(current_runtime(), page.records)
    except redis.RedisError:
        raise unavailable("records cannot be read now") from None
    return ResendPage(
        items=[record.model_dump(mode="json") for record in shown],
        next_cursor=page.next_cursor,
    )


def _limit(text: str | None, errors: dict[str, str]) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        errors["limit"] = f"must be a whole number from 1 to {MAX_PAGE}"
        return DEFAULT_PAGE
    return int(text)


def _cancel(request_id: str, by: str) -> JSONResponse:
    _require_request_id(request_id)
    try:
        record = get_resend(request_id)
        if record is None:
            raise _not_found()
        if record.status.is_final:
            # Refused as it stands: `cancel_resend` would call a cancelled one "cancelled".
            answer = {"result": record.status.value, "callers": 1 + record.merges}
            return JSONResponse(answer, status_code=409)
        cancellation = cancel_resend_detailed(request_id, by=by)
    except RedisUnavailable:
        raise unavailable("the request cannot be cancelled now; retry later") from None
    result = cancellation.result
    if result is CancelResult.UNKNOWN:  # expired between the two reads
        raise _not_found()
    status_code = 200 if result is CancelResult.CANCELLED else 409
    answer = {"result": result.value, "callers": cancellation.callers}
    return JSONResponse(answer, status_code=status_code)


def _retry(request_id: str, by: str, force: bool) -> RetryAnswer:
    _require_request_id(request_id)
    try:
        if get_resend(request_id) is None:
            raise _not_found()
        submission = retry_resend(request_id, by=by, force=force)
    except NotRetryable as error:
        raise HttpProblem(409, "not_failed", str(error)) from None
    except InvalidResendRequest as error:
        raise HttpProblem(409, "not_retryable", str(error)) from None
    except RedisUnavailable:
        raise unavailable("the retry could not be stored; retry later") from None
    return RetryAnswer(
        id=submission.request_id,
        retry_of=request_id,
        recent=submission.outcome == SubmissionOutcome.RECENT,
    )


def _order(reference_order_id: str) -> OrderResends:
    if not REFERENCE_ORDER_ID.fullmatch(reference_order_id):
        raise _invalid({"referenceOrderID": ORDER_ID_MESSAGE})
    try:
        records = shown_records(
            current_runtime(), order_history(current_runtime(), reference_order_id)
        )
    except redis.RedisError:
        raise unavailable("records cannot be read now") from None
    return OrderResends(
        referenceOrderID=reference_order_id,
        requests=[record.model_dump(mode="json") for record in records],
    )
