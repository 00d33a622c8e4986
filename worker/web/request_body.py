"""The raw body of a POST, read under a size cap before anything parses it.

Shared by the webhook receiver (`worker/web/app.py`) and the REST API (`worker/web/rest_api.py`):
both check a body (its size, and a webhook's signature) before parsing it, so FastAPI is given
the bytes, not a model (`worker/web/openapi.py` states the schema it would have derived).

A JSON route takes only a JSON body (`Content-Type: application/json`, or a `+json` type):
a `text/plain` POST is what any web page can send cross-site without asking the browser
first, so it is refused (415) before the body is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from worker.web.problems import HttpProblem


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type header names JSON (`application/json`, `application/x+json`)."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    kind, slash, subtype = media_type.partition("/")
    is_json = subtype == "json" or subtype.endswith("+json")
    return bool(slash) and kind == "application" and is_json


def capped_body(limit: int, json_only: bool = False) -> Callable[[Request], Awaitable[bytes]]:
    """A FastAPI dependency: the request's body, or a 413 problem past `limit` bytes (and,
    `json_only`, a 415 problem unless the body is declared JSON)."""

    async def raw_body(request: Request) -> bytes:
        if json_only and not is_json_media_type(request.headers.get("content-type")):
            raise HttpProblem(
                415,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json",
            )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise _too_large(limit)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:  # a sender without Content-Length is cut off here
                raise _too_large(limit)
        return bytes(body)

    return raw_body


def _too_large(limit: int) -> HttpProblem:
    # Built only when refused: the webhook route reads bodies in storms.
    return HttpProblem(413, "body_too_large", f"the body may hold at most {limit} bytes")
