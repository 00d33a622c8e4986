"""The console's pages (GET): home, search, an order's history, a request, the fleet."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.

import re
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from worker.runtime import current_runtime
from worker.state.queries import (
    MIN_PREFIX_LENGTH,
    AmbiguousRequestId,
    as_shown,
    order_history,
    resolve_request_id,
)
from worker.state.record_model import is_request_id
from worker.state.records import CancelResult, ResendRecord
from worker.tango.ids import REFERENCE_ORDER_ID
from worker.web.console import fleet
from worker.web.console.common import ConsoleCore, redirect, secured
from worker.web.console.recent import last_resent
from worker.web.console.sessions import Session

_ID_LIKE = re.compile(r"[0-9A-Za-z.\-]{1,64}")
STATIC_TYPES = {"console.css": "text/css", "console.js": "text/javascript"}
LIVE_EVERY_MS = 1000
FLEET_EVERY_MS = 5000


def add_pages(router: APIRouter, core: ConsoleCore) -> None:
    """Register the pages on `router`: each one's work is the function it names."""

    @router.get("/console", include_in_schema=False)
    def home(request: Request) -> Response:
        return core.signed_in(request, lambda session: _home(core, request, session))

    @router.get("/console/search", include_in_schema=False)
    def search(request: Request, q: str = "") -> Response:
        return core.signed_in(request, lambda session: _search(core, request, session, q))

    @router.get("/console/orders/{order}", include_in_schema=False)
    def order_page(request: Request, order: str) -> Response:
        return core.signed_in(request, lambda session: _order(core, request, session, order))

    @router.get("/console/requests/{request_id}", include_in_schema=False)
    def request_page(request: Request, request_id: str) -> Response:
        return core.signed_in(request, lambda session: _request(core, request, session, request_id))

    @router.get("/console/requests/{request_id}/live", include_in_schema=False)
    def request_live(request: Request, request_id: str) -> Response:
        return _request_live(core, request, request_id)

    @router.get("/console/fleet", include_in_schema=False)
    def fleet_page(request: Request) -> Response:
        return core.signed_in(request, lambda session: _fleet_page(core, request, session))

    @router.get("/console/fleet/live", include_in_schema=False)
    def fleet_live(request: Request) -> Response:
        return _fleet_live(core, request)

    @router.get("/console/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return _static(name)


def _home(core: ConsoleCore, request: Request, session: Session) -> Response:
    return core.render("home.html", request, session, form={}, errors={})


def _search(core: ConsoleCore, request: Request, session: Session, q: str) -> Response:
    text = q.strip()
    if REFERENCE_ORDER_ID.fullmatch(text):
        return redirect(f"/console/orders/{text}")
    found, problem = _find_request(text)
    if found is not None:
        return redirect(f"/console/requests/{found}")
    return core.render(
        "home.html", request, session, status=404, form={}, errors={}, query=q, problem=problem
    )


def _order(core: ConsoleCore, request: Request, session: Session, order: str) -> Response:
    if not REFERENCE_ORDER_ID.fullmatch(order):
        return core.render(
            "message.html",
            request,
            session,
            status=404,
            title="Not an order id",
            message="An order id looks like RA180426-1401-64.",
        )
    runtime = current_runtime()
    records = [as_shown(runtime, record) for record in order_history(runtime, order)]
    return core.render(
        "order.html",
        request,
        session,
        order=order,
        records=records,
        form={"referenceOrderID": order},
        errors={},
        last=last_resent(runtime, order),
    )


def _request(core: ConsoleCore, request: Request, session: Session, request_id: str) -> Response:
    record = _shown(request_id)
    if record is None:
        # A unique prefix (8+ characters, as the search box takes) opens the request's page.
        found, _ = _find_request(request_id)
        if found is not None and found != request_id:
            return redirect(f"/console/requests/{found}")
        return _unknown_request(core, request, session)
    return core.render(
        "request.html",
        request,
        session,
        record=record,
        every=LIVE_EVERY_MS,
        notice=_notice(dict(request.query_params)),
    )


def _notice(query: dict[str, str]) -> dict[str, str]:
    """What the page may say about the action that led to it: only the words our own
    redirects put in the query (`created`, `merged`, `recent`, a cancel result, a request
    id), never text a link's author chose, which the page would say in its own voice."""
    notice = {}
    for outcome in ("created", "merged", "recent"):
        if query.get(outcome) == "1":
            notice[outcome] = "1"
    if query.get("cancel") in {result.value for result in CancelResult}:
        notice["cancel"] = query["cancel"]
    if is_request_id(query.get("retry_of", "")):
        notice["retry_of"] = query["retry_of"]
    return notice


def _request_live(core: ConsoleCore, request: Request, request_id: str) -> Response:
    """The live part of a request's page, which its script fetches without redirects (a
    refresh, not a person's doing: it does not hold off the idle timeout)."""
    session = core.session(request, active=False)
    record = None if session is None else _shown(request_id)
    if record is None:  # the script reloads the page on 401, and keeps trying on 404
        return secured(Response(status_code=401 if session is None else 404))
    return core.render("_live.html", request, session, record=record, every=LIVE_EVERY_MS)


def _fleet_page(core: ConsoleCore, request: Request, session: Session) -> Response:
    return core.render("fleet.html", request, session, fleet=_fleet(), every=FLEET_EVERY_MS)


def _fleet_live(core: ConsoleCore, request: Request) -> Response:
    """The live part of the fleet page (401 without a session: its script reloads the page)."""
    session = core.session(request, active=False)
    if session is None:
        return secured(Response(status_code=401))
    return core.render("_fleet.html", request, session, fleet=_fleet(), every=FLEET_EVERY_MS)


def _static(name: str) -> Response:
    if name not in STATIC_TYPES:
        return Response(status_code=404)
    body = resources.files("worker.web.console").joinpath("static", name).read_bytes()
    response = Response(body, media_type=STATIC_TYPES[name])
    response.headers["Cache-Control"] = "max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _fleet() -> fleet.FleetOverview:
    return fleet.overview(current_runtime())


def _shown(request_id: str) -> ResendRecord | None:
    if not is_request_id(request_id):  # checked before any use (a lookup, a page, a log)
        return None
    runtime = current_runtime()
    record = runtime.records.get(request_id)
    return None if record is None else as_shown(runtime, record)


def _find_request(text: str) -> tuple[str | None, str]:
    """The request `text` names, or why none."""
    if not text:
        return None, "Give an order id (RA180426-1401-64) or a request id."
    try:
        found = resolve_request_id(current_runtime(), text)
    except AmbiguousRequestId as error:
        return None, str(error)
    if found is not None:
        return found, ""
    hint = (
        f" (a request id prefix needs at least {MIN_PREFIX_LENGTH} characters)"
        if len(text) < MIN_PREFIX_LENGTH
        else ""
    )
    # Echoed only when it looks like an id: a link's author must not make the console's
    # alert say sentences of its choosing.
    named = repr(text) if _ID_LIKE.fullmatch(text) else "your search"
    return None, f"No order or request matches {named}{hint}."


def _unknown_request(core: ConsoleCore, request: Request, session: Session) -> Response:
    return core.render(
        "message.html",
        request,
        session,
        status=404,
        title="No such request",
        message="No request has this id (unknown, or expired after 30 days).",
    )
