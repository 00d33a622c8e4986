"""Request and answer values passed between the HTTP handler and the routes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .formats import iso_ms, to_ms

JSON_TYPE = "application/json"
HTML_TYPE = "text/html"

_HTML_PAGE = (
    "<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>awselb/2.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request.

    Attributes:
        method: HTTP method.
        path: Path without the query string, as sent (still percent-encoded).
        query: Query parameters.
        body: Raw body bytes.
        json_body: The body parsed as JSON, or None when empty or not JSON.
        body_is_json: True when the body is empty or valid JSON.
        content_type: The ``Content-Type`` header, or ``""``.
        authorization: The ``Authorization`` header, or None.
        auth: Classification of ``authorization`` (basic/bearer/none/invalid).
        request_id: The id echoed in ``X-REQUEST-ID`` and error bodies.
        received_at: Sandbox clock when the request arrived.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    json_body: Any
    body_is_json: bool
    content_type: str
    authorization: str | None
    auth: str
    request_id: str
    received_at: float

    def param(self, name: str) -> str | None:
        """Returns the first value of a query parameter, or None."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    """An answer to write, plus how to misbehave while writing it.

    Attributes:
        status: HTTP status (ignored when ``reset`` is set).
        body: Body bytes.
        content_type: ``Content-Type`` header value.
        headers: Extra headers.
        i18n_key: Tango's key, recorded in the call log.
        delay_after: Seconds to stall before writing.
        reset: Drop the connection instead of writing anything.
        close: Close the connection after writing (body left unread).
    """

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    i18n_key: str | None = None
    delay_after: float = 0.0
    reset: bool = False
    close: bool = False


def phrase(status: int) -> str:
    """Returns the standard reason phrase for a status, or ``Error``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def json_response(status: int, payload: Any, *, i18n_key: str | None = None) -> Response:
    """Builds a JSON answer.

    Args:
        status: HTTP status.
        payload: Anything ``json.dumps`` accepts.
        i18n_key: Tango key to record in the call log.

    Returns:
        The answer.
    """
    return Response(status=status, body=json.dumps(payload).encode("utf-8"), i18n_key=i18n_key)


def field_error(
    path: str, i18n_key: str, message: str, invalid_value: Any, constraint: str
) -> dict[str, Any]:
    """Builds one entry of a Tango error's ``errors`` list."""
    return {
        "path": path,
        "i18nKey": i18n_key,
        "message": message,
        "invalidValue": invalid_value,
        "constraint": constraint,
    }


def tango_error(
    request: Request,
    now: float,
    status: int,
    i18n_key: str,
    message: str,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    """Builds an error in Tango's ``ApiError`` shape.

    Args:
        request: The request being answered (for ``path`` and ``requestId``).
        now: Sandbox clock, rendered as ``timestamp``.
        status: HTTP status.
        i18n_key: Tango's message key, e.g. ``403.005``.
        message: Human-readable message.
        errors: Field errors, included only when given.

    Returns:
        The answer.
    """
    payload: dict[str, Any] = {
        "timestamp": iso_ms(to_ms(now)),
        "requestId": request.request_id,
        "path": request.path,
        "httpCode": status,
        "httpPhrase": phrase(status),
        "i18nKey": i18n_key,
        "message": message,
    }
    if errors:
        payload["errors"] = errors
    return json_response(status, payload, i18n_key=i18n_key)


def html_response(status: int) -> Response:
    """Builds the kind of HTML page a load balancer answers with."""
    page = _HTML_PAGE.format(code=status, phrase=phrase(status))
    return Response(status=status, body=page.encode("utf-8"), content_type=HTML_TYPE)


def malformed_response(status: int) -> Response:
    """Builds an answer that claims JSON but is cut off mid-object."""
    return Response(status=status, body=b'{"id": 17, "legacyId": "RA-', content_type=JSON_TYPE)
