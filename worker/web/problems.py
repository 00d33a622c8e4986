"""JSON problems and JSON bodies for the web app's routes: one shape for every refusal.

Shared by the webhook receiver (`worker/web/app.py`) and the REST API (`worker/web/rest_api.py`), so
both answer errors alike and neither imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from worker.core.errors import TangoResendError


class Problem(BaseModel):
    error: str
    message: str
    fields: dict[str, str] | None = None


class HttpProblem(TangoResendError):
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


def problem_response(_: Request, problem: HttpProblem) -> JSONResponse:
    content = Problem(error=problem.error, message=problem.message, fields=problem.fields)
    return JSONResponse(
        content.model_dump(exclude_none=True), status_code=problem.status, headers=problem.headers
    )


def problem_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's `responses`: each refusal status, answered with a `Problem`, and when."""
    return {
        status: {"model": Problem, "description": description}
        for status, description in descriptions.items()
    }


def unavailable(message: str) -> HttpProblem:
    """503 with Retry-After: Redis or the broker cannot answer now."""
    return HttpProblem(503, "unavailable", message, headers={"Retry-After": "5"})


class _DuplicateKey(ValueError):
    """Raised while parsing when one JSON object names a key twice."""


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers disagree on which of two equal keys wins (Python's keeps the last, others
    # the first), so a signed body could mean one request to its sender and another to us.
    parsed = dict(pairs)
    if len(parsed) != len(pairs):
        raise _DuplicateKey
    return parsed


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object.

    Raises:
        HttpProblem: 400 when it is not JSON or names a key twice in one object; 422 when it
            is JSON but not an object.
    """
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
