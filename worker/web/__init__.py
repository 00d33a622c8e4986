"""The HTTP side: the webhook receiver, the REST API and the support console, one FastAPI app.

`app.py` builds it (`create_app`) with the webhook route, `health.py` is /healthz, `server.py`
runs it under uvicorn, `webhook_signature.py` checks Standard Webhooks signatures, `rest_api.py`
and `console/` exist only with `API_TOKEN` (`api_tokens.py`), `problems.py` gives every refusal
one JSON shape, `request_body.py` reads a body under its size cap, `schema.py` is the request
body and `openapi.py` what the OpenAPI schema cannot derive of it.
`worker.web:create_app` stays a valid app path; it is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from worker.web.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
