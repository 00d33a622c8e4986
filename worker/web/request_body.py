"""The raw body of a POST, read under a size cap before anything parses it.

Shared by the webhook receiver (`worker/web/app.py`) and the REST API (`worker/web/rest_api.py`):
both check a body (its size, and a webhook's signature) before parsing it, so FastAPI is given
the bytes, not a model (`worker/web/openapi.py` states the schema it would have derived).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from worker.web.problems import HttpProblem


def capped_body(limit: int) -> Callable[[Request], Awaitable[bytes]]:
    """A FastAPI dependency: the request's body, or a 413 problem past `limit` bytes."""

    async def raw_body(request: Request) -> bytes:
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
