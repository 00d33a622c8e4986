"""The ``/_sandbox`` test-control routes: unauthenticated and never logged as calls."""

from __future__ import annotations

from typing import Any

from .responses import Request, Response, json_response
from .state import SandboxState


class _BadControlRequest(ValueError):
    """Raised when a control body has a missing or mistyped field."""


def _object_body(request: Request) -> dict[str, Any]:
    if not request.body_is_json:
        raise _BadControlRequest("body must be JSON")
    body = {} if request.json_body is None else request.json_body
    if not isinstance(body, dict):
        raise _BadControlRequest("body must be a JSON object")
    return body


def _value(body: dict[str, Any], name: str, kinds: tuple[type, ...]) -> Any:
    value = body.get(name)
    # bool is an int subclass; refuse it where a number is meant.
    if value is not None and (
        not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    ):
        raise _BadControlRequest(f"{name} has the wrong type")
    return value


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value: str | None = _value(body, name, (str,))
    return value


def _str(body: dict[str, Any], name: str, default: str) -> str:
    value = _opt_str(body, name)
    return default if value is None else value


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value: bool | None = _value(body, name, (bool,))
    return default if value is None else value


def _opt_int(body: dict[str, Any], name: str) -> int | None:
    value: int | None = _value(body, name, (int,))
    return value


def _opt_float(body: dict[str, Any], name: str) -> float | None:
    value: float | None = _value(body, name, (int, float))
    return None if value is None else float(value)


def _bad(message: str) -> Response:
    return json_response(400, {"error": message})


def add_order(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``POST /_sandbox/orders``."""
    try:
        body = _object_body(request)
        reference_order_id = _str(body, "referenceOrderID", "")
        state.add_order(
            reference_order_id,
            email=_str(body, "email", "recipient@example.com"),
            mobile=_opt_str(body, "mobile"),
            delivery_method=_str(body, "deliveryMethod", "EMAIL"),
            send_email=_bool(body, "sendEmail", True),
            etid=_str(body, "etid", "E000000"),
            customer_identifier=_str(body, "customerIdentifier", "customer-1"),
            account_identifier=_str(body, "accountIdentifier", "account-1"),
            created_at=_opt_str(body, "createdAt"),
            external_ref_id=_opt_str(body, "externalRefID"),
        )
    except ValueError as error:
        return _bad(str(error))
    return json_response(201, {"referenceOrderID": reference_order_id})


def add_fault(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``POST /_sandbox/faults``."""
    try:
        body = _object_body(request)
        reference_order_id = _str(body, "referenceOrderID", "*")
        count = _opt_int(body, "count")
        delay_seconds = _opt_float(body, "delaySeconds")
        process_seconds = _opt_float(body, "processSeconds")
        state.inject_fault(
            reference_order_id,
            status=_opt_int(body, "status"),
            count=1 if count is None else count,
            retry_after=_opt_float(body, "retryAfter"),
            delay_seconds=0.0 if delay_seconds is None else delay_seconds,
            delay_phase=_str(body, "delayPhase", "before"),
            body=_str(body, "body", "json"),
            reset=_bool(body, "reset", False),
            process_seconds=0.0 if process_seconds is None else process_seconds,
        )
    except ValueError as error:
        return _bad(str(error))
    return json_response(201, {"referenceOrderID": reference_order_id})


def portal_resend(
    request: Request, state: SandboxState, reference_order_id: str | None
) -> Response:
    """Handles ``POST /_sandbox/orders/{referenceOrderID}/portal-resend``."""
    assert reference_order_id is not None
    try:
        state.portal_resend(reference_order_id)
    except KeyError:
        return json_response(404, {"error": "order not found"})
    return json_response(200, {"referenceOrderID": reference_order_id})


def list_calls(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``GET /_sandbox/calls``."""
    return json_response(200, {"calls": state.calls()})


def count_tokens(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``GET /_sandbox/tokens``."""
    return json_response(200, {"issued": state.token_requests()})


def stats(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``GET /_sandbox/stats``: calls accepted by and refused by the rate limit."""
    return json_response(200, state.stats())


_CONFIG_FIELDS = {"rateLimit", "cooldownSeconds", "lastSentFormat"}


def configure(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``POST /_sandbox/config``: ``rateLimit``, ``cooldownSeconds``, ``lastSentFormat``.

    Answers the settings in force afterwards; an unknown field is refused so a
    typo cannot silently change nothing.
    """
    try:
        body = _object_body(request)
        unknown = sorted(set(body) - _CONFIG_FIELDS)
        if unknown:
            raise _BadControlRequest(f"unknown setting(s): {', '.join(unknown)}")
        state.configure(
            rate_limit=_opt_float(body, "rateLimit"),
            cooldown_seconds=_opt_float(body, "cooldownSeconds"),
            last_sent_format=_opt_str(body, "lastSentFormat"),
        )
    except ValueError as error:
        return _bad(str(error))
    return json_response(
        200,
        {
            "rateLimit": state.config.rate_limit,
            "cooldownSeconds": state.config.cooldown_seconds,
            "lastSentFormat": state.config.last_sent_format,
        },
    )


def reset(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``POST /_sandbox/reset``."""
    state.reset()
    return json_response(200, {"ok": True})


def health(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``GET /_sandbox/health``."""
    return json_response(200, {"ok": True})
