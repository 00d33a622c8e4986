"""The OAuth 2.0 client-credentials token route."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from .credentials import decode_basic
from .responses import Request, Response, json_response
from .state import SandboxState


def _token_params(request: Request) -> dict[str, str] | None:
    text = request.body.decode("utf-8", errors="replace")
    if "json" in request.content_type.lower() or text.lstrip().startswith("{"):
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        return {str(key): str(value) for key, value in parsed.items() if value is not None}
    return {key: values[0] for key, values in parse_qs(text).items()}


def _basic_client(authorization: str | None) -> tuple[str, str] | None:
    # RFC 6749 also lets a client send its credentials as HTTP Basic.
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    return decode_basic(encoded) if scheme.lower() == "basic" else None


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description})


def token(request: Request, state: SandboxState, _: str | None) -> Response:
    """Handles ``POST /oauth/token``; every call is counted, successful or not.

    Args:
        request: The parsed request (form-encoded or JSON body).
        state: Sandbox state.
        _: Unused path parameter.

    Returns:
        The token answer, or an OAuth error.
    """
    state.count_token_request()
    params = _token_params(request)
    if params is None:
        return _oauth_error(400, "invalid_request", "Malformed request body")
    if params.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "Only client_credentials is supported")
    client_id = params.get("client_id")
    client_secret = params.get("client_secret")
    if client_id is None or client_secret is None:
        from_header = _basic_client(request.authorization)
        if from_header is not None:
            client_id, client_secret = from_header
    issued = state.issue_token(client_id or "", client_secret or "")
    if issued is None:
        return _oauth_error(401, "access_denied", "Unauthorized")
    response = json_response(
        200,
        {
            "access_token": issued,
            "scope": "raas.all",
            "expires_in": state.config.token_ttl_seconds,
            "token_type": "Bearer",
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response
