"""The Tango RaaS v2 routes the worker uses: resend, order lookup, order list."""

from __future__ import annotations

import re
import time
from typing import Any

from .faults import Fault
from .formats import iso_ms, parse_rfc3339_ms, render_last_sent, render_seconds
from .models import DELIVERY_METHODS
from .ratelimit import retry_after_header
from .responses import (
    Request,
    Response,
    field_error,
    html_response,
    json_response,
    malformed_response,
    phrase,
    tango_error,
)
from .state import SandboxState

_MAX_ELEMENTS_PER_BLOCK = 100
_DEFAULT_ELEMENTS_PER_BLOCK = 10

# field -> (pattern, i18nKey, message, constraint); 422.134 is the key Tango's own
# ApiError sample uses for a bad email, the others have no public key.
_RESEND_FIELD_RULES: dict[str, tuple[re.Pattern[str], str, str, str]] = {
    "newEmail": (
        re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+"),
        "422.134",
        "not a well-formed email address",
        "Email",
    ),
    "newMobile": (
        re.compile(r"\+[0-9]{8,15}"),
        "400.000",
        "must be an E.164 phone number (+ then 8 to 15 digits)",
        "Pattern",
    ),
    "newEtid": (
        re.compile(r"E[0-9]{6}"),
        "400.000",
        "must match E followed by 6 digits",
        "Pattern",
    ),
    "newDeliveryMethod": (
        re.compile("|".join(DELIVERY_METHODS)),
        "400.000",
        f"must be one of {', '.join(DELIVERY_METHODS)}",
        "Enum",
    ),
}


_AUTHENTICATED = ("basic", "bearer")


def _require_auth(request: Request, state: SandboxState) -> Response | None:
    if request.auth in _AUTHENTICATED:
        return None
    return tango_error(request, state.now(), 401, "401.001", "Unauthorized")


def _rate_limit(request: Request, state: SandboxState) -> Response | None:
    """Applies the platform rate limit to an authenticated call; None lets it through.

    Unauthenticated calls are neither limited nor counted: Tango judges the
    limit per account, so it needs to know who is calling first.
    """
    if request.auth not in _AUTHENTICATED:
        return None
    verdict = state.admit_call(request.received_at)
    if verdict.accepted:
        return None
    message = f"platform rate limit {render_seconds(verdict.rate_limit)} TPS threshold reached"
    response = tango_error(request, state.now(), 429, "429.008", message)
    response.headers["Retry-After"] = retry_after_header(verdict.wait_seconds)
    return response


def _order_not_found(request: Request, state: SandboxState) -> Response:
    return tango_error(request, state.now(), 404, "404.017", "Order not found")


def validate_resend_body(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks a resend body field by field.

    Args:
        body: The parsed JSON object.

    Returns:
        One Tango field error per unknown or invalid field; empty when valid.
    """
    errors: list[dict[str, Any]] = []
    for name, value in body.items():
        rule = _RESEND_FIELD_RULES.get(name)
        if rule is None:
            errors.append(field_error(name, "400.000", "unrecognized field", value, "Unknown"))
            continue
        if value is None:
            continue  # null means "keep the original", per Tango's docs
        pattern, i18n_key, message, constraint = rule
        if not isinstance(value, str) or not pattern.fullmatch(value):
            errors.append(field_error(name, i18n_key, message, value, constraint))
    return errors


def _process_resend(request: Request, state: SandboxState, reference_order_id: str) -> Response:
    refusal = _require_auth(request, state)
    if refusal is not None:
        return refusal
    if not state.has_order(reference_order_id):
        return _order_not_found(request, state)
    if not request.body_is_json:
        return tango_error(request, state.now(), 400, "400.000", "Malformed JSON request body")
    body = {} if request.json_body is None else request.json_body
    if not isinstance(body, dict):
        return tango_error(
            request, state.now(), 400, "400.000", "Request body must be a JSON object"
        )
    errors = validate_resend_body(body)
    if errors:
        return tango_error(request, state.now(), 400, "400.000", "Invalid request", errors)

    outcome = state.resend(reference_order_id, body)
    now = outcome.now_ms / 1000
    if outcome.kind == "not_found":  # removed by a reset since the check above
        return _order_not_found(request, state)
    if outcome.kind == "send_email_disabled":
        message = "Cannot resend an email that was created with sendEmail=false"
        return tango_error(request, now, 403, "403.003", message)
    if outcome.kind == "cooldown":
        config = state.config
        message = (
            f"Cannot send more than once every {render_seconds(config.cooldown_seconds)} "
            f"seconds. Last sent at "
            f"{render_last_sent(outcome.last_sent_ms, config.last_sent_format)}"
        )
        return tango_error(request, now, 403, "403.005", message)
    return json_response(
        201,
        {
            "id": outcome.resend_id,
            "legacyId": f"LR{outcome.resend_id:08d}",
            "createdAt": iso_ms(outcome.last_sent_ms),
            "email": outcome.email,
        },
    )


def _fault_answer(request: Request, state: SandboxState, fault: Fault, status: int) -> Response:
    if fault.body == "html":
        return html_response(status)
    if fault.body == "malformed":
        return malformed_response(status)
    if status == 429:
        return tango_error(request, state.now(), 429, "429.001", "Too many requests")
    return tango_error(request, state.now(), status, f"{status}.000", phrase(status))


def _success_with_fault(response: Response, fault: Fault, status: int) -> Response:
    if fault.body == "html":
        return html_response(status)
    if fault.body == "malformed":
        return malformed_response(status)
    response.status = status
    return response


def resend(request: Request, state: SandboxState, reference_order_id: str | None) -> Response:
    """Handles ``POST /raas/v2/orders/{referenceOrderID}/resends``.

    An authenticated call over the rate limit is refused with 429.008 before
    anything else: no fault is consumed and no order changes. Otherwise a
    queued fault is consumed first, so it applies even to a request that
    would fail authentication. A fault with a 2xx status still runs the real
    resend (Tango cannot say 201 without having resent); any other status
    answers instead of processing, or, with ``delay_phase="after"``, after
    processing (a gateway's 502 for a resend Tango performed).

    Args:
        request: The parsed request.
        state: Sandbox state.
        reference_order_id: The decoded order id from the path.

    Returns:
        The answer, possibly marked for a delayed write or a connection reset.
    """
    assert reference_order_id is not None
    limited = _rate_limit(request, state)
    if limited is not None:
        return limited
    fault = state.next_fault(reference_order_id)
    if fault is None:
        return _process_resend(request, state, reference_order_id)
    return _resend_with_fault(request, state, reference_order_id, fault)


def _resend_with_fault(
    request: Request, state: SandboxState, reference_order_id: str, fault: Fault
) -> Response:
    """A resend that `fault` stalls, cuts off or answers in place of Tango."""
    if fault.delay_phase == "before" and fault.delay_seconds > 0:
        time.sleep(fault.delay_seconds)
    if fault.reset and fault.delay_phase == "before":
        return Response(status=0, reset=True)
    if fault.process_seconds > 0:
        time.sleep(fault.process_seconds)
    response = _faulted_answer(request, state, reference_order_id, fault)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = render_seconds(fault.retry_after)
    if fault.delay_phase == "after":
        response.delay_after = fault.delay_seconds
    response.reset = fault.reset
    return response


def _faulted_answer(
    request: Request, state: SandboxState, reference_order_id: str, fault: Fault
) -> Response:
    """The fault's error in place of Tango's answer, or Tango's own with the fault's 2xx."""
    if fault.status is not None and not fault.is_success_status:
        if fault.delay_phase == "after":
            # A gateway that lost Tango's answer: the resend happens (when Tango allows it),
            # and the caller only sees the gateway's error.
            _process_resend(request, state, reference_order_id)
        return _fault_answer(request, state, fault, fault.status)
    response = _process_resend(request, state, reference_order_id)
    if fault.status is not None and 200 <= response.status <= 299:
        response = _success_with_fault(response, fault, fault.status)
    return response


def get_order(request: Request, state: SandboxState, reference_order_id: str | None) -> Response:
    """Handles ``GET /raas/v2/orders/{referenceOrderID}``."""
    assert reference_order_id is not None
    refusal = _require_auth(request, state) or _rate_limit(request, state)
    if refusal is not None:
        return refusal
    order = state.order_json(reference_order_id)
    if order is None:
        return _order_not_found(request, state)
    return json_response(200, order)


def _int_param(
    request: Request,
    name: str,
    default: int,
    low: int,
    high: int | None,
    errors: list[dict[str, Any]],
) -> int:
    raw = request.param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append(field_error(name, "400.000", "must be an integer", raw, "Type"))
        return default
    if value < low:
        errors.append(field_error(name, "400.000", f"must be at least {low}", raw, "Min"))
    elif high is not None and value > high:
        errors.append(field_error(name, "400.000", f"must be at most {high}", raw, "Max"))
    return value


def _date_param(request: Request, name: str, errors: list[dict[str, Any]]) -> int | None:
    raw = request.param(name)
    if raw is None:
        return None
    try:
        return parse_rfc3339_ms(raw)
    except ValueError:
        errors.append(field_error(name, "400.000", "must be an RFC 3339 date-time", raw, "Date"))
        return None


def list_orders(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``GET /raas/v2/orders`` with Tango's filters and paging."""
    refusal = _require_auth(request, state) or _rate_limit(request, state)
    if refusal is not None:
        return refusal
    errors: list[dict[str, Any]] = []
    per_block = _int_param(
        request,
        "elementsPerBlock",
        _DEFAULT_ELEMENTS_PER_BLOCK,
        1,
        _MAX_ELEMENTS_PER_BLOCK,
        errors,
    )
    page = _int_param(request, "page", 0, 0, None, errors)
    start_ms = _date_param(request, "startDate", errors)
    end_ms = _date_param(request, "endDate", errors)
    if errors:
        return tango_error(request, state.now(), 400, "400.000", "Invalid request", errors)
    orders = state.list_orders(
        start_ms=start_ms,
        end_ms=end_ms,
        customer_identifier=request.param("customerIdentifier"),
        account_identifier=request.param("accountIdentifier"),
        external_ref_id=request.param("externalRefID"),
    )
    block = orders[page * per_block : (page + 1) * per_block]
    return json_response(
        200,
        {
            "page": {
                "number": page,
                "elementsPerBlock": per_block,
                "resultCount": len(block),
                "totalCount": len(orders),
            },
            "orders": block,
        },
    )
