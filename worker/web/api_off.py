"""What the REST API's and the console's paths answer while API_TOKEN is unset: a 404 that
says why, rather than a bare "Not Found" that reads like a wrong URL."""

from __future__ import annotations

from fastapi import APIRouter

from worker.web.problems import HttpProblem

API_OFF_MESSAGE = (
    "the REST API and the support console are off: set API_TOKEN (at least 32 characters) "
    "on this receiver to turn them on (make run-dev makes a local one)"
)
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_PATHS = (
    "/resends",
    "/resends/{rest:path}",
    "/orders/{rest:path}",
    "/console",
    "/console/{rest:path}",
)


def build_api_off_router() -> APIRouter:
    """Routes that answer every REST API and console path with 404 `api_disabled`; left out
    of the OpenAPI schema, which describes only what the receiver serves."""
    router = APIRouter(include_in_schema=False)

    def api_off() -> None:
        raise HttpProblem(404, "api_disabled", API_OFF_MESSAGE)

    for path in _PATHS:
        router.add_api_route(path, api_off, methods=_METHODS)
    return router
