"""Which function answers which method and path."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from . import controls, oauth, raas
from .responses import Request, Response
from .state import SandboxState

RouteHandler = Callable[[Request, SandboxState, str | None], Response]


@dataclass(frozen=True)
class Route:
    """One endpoint: a method, a full-path pattern (group 1 = the path id) and its handler."""

    method: str
    pattern: re.Pattern[str]
    handler: RouteHandler


ROUTES = (
    Route("POST", re.compile(r"/raas/v2/orders/([^/]+)/resends"), raas.resend),
    Route("GET", re.compile(r"/raas/v2/orders/([^/]+)"), raas.get_order),
    Route("GET", re.compile(r"/raas/v2/orders"), raas.list_orders),
    Route("POST", re.compile(r"/oauth/token"), oauth.token),
    Route("POST", re.compile(r"/_sandbox/orders"), controls.add_order),
    Route("POST", re.compile(r"/_sandbox/orders/([^/]+)/portal-resend"), controls.portal_resend),
    Route("POST", re.compile(r"/_sandbox/faults"), controls.add_fault),
    Route("GET", re.compile(r"/_sandbox/calls"), controls.list_calls),
    Route("GET", re.compile(r"/_sandbox/tokens"), controls.count_tokens),
    Route("GET", re.compile(r"/_sandbox/stats"), controls.stats),
    Route("POST", re.compile(r"/_sandbox/config"), controls.configure),
    Route("POST", re.compile(r"/_sandbox/reset"), controls.reset),
    Route("GET", re.compile(r"/_sandbox/health"), controls.health),
)


def match_route(method: str, path: str) -> tuple[Route | None, str | None, list[str]]:
    """Finds the route for a request.

    Args:
        method: HTTP method.
        path: Request path without the query string.

    Returns:
        The route (or None), the percent-decoded id from the path (or None), and
        the methods this path allows when the method did not match (for a 405).
    """
    allowed: list[str] = []
    path_id: str | None = None
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        path_id = unquote(found[1]) if found.groups() else None
        if route.method == method:
            return route, path_id, allowed
        allowed.append(route.method)
    return None, path_id, allowed
