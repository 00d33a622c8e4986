"""The support console at /console: server-rendered pages for people who don't use a terminal.

Mounted by `worker.web.app.create_app` beside the REST API when `API_TOKEN` is set. Sign-in takes
`API_TOKEN` (or `API_READ_TOKEN` for a read-only session); pages are Jinja2 templates shipped
in this package, with one small script of our own (`static/console.js`) that only makes the
live parts refresh themselves: without it, they refresh by a meta refresh instead.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from worker.core.settings import Settings
from worker.web.console.actions import add_actions
from worker.web.console.common import ConsoleCore
from worker.web.console.pages import add_pages


def build_console_router(settings: Settings) -> APIRouter:
    """The console's routes (none of them in the OpenAPI schema: they serve HTML)."""
    router = APIRouter()
    core = ConsoleCore(settings)
    add_pages(router, core)  # before the actions: /requests/{id}/live precedes /{action}
    add_actions(router, core)
    return router


REDIS_UNREACHABLE_MESSAGE = "Redis is unreachable; nothing was changed. Try again in a moment."


def redis_unreachable_page(settings: Settings, request: Request) -> HTMLResponse:
    """The console's 503 page when Redis cannot be reached: the same look as every page,
    without a session (reading one needs Redis)."""
    return ConsoleCore(settings).render(
        "message.html",
        request,
        None,
        status=503,
        title="Redis is unreachable",
        message=REDIS_UNREACHABLE_MESSAGE,
    )
