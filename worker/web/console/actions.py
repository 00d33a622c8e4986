"""The console's forms (POST): sign-in and sign-out, resend, cancel and retry.

Every form carries a CSRF token: the session's, or before sign-in a one-off token also set as
a cookie (double submit). Cookies are HttpOnly and SameSite=Strict, and Secure when the
browser came over HTTPS (behind a proxy only with CONSOLE_TRUST_PROXY=true).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.

import logging
import posixpath
import secrets
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote, unquote, urlsplit

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from worker.resend import origins, producer, retry
from worker.resend.validation import InvalidResendRequest
from worker.runtime import current_runtime
from worker.state.queries import as_shown
from worker.state.record_model import is_request_id
from worker.state.records import SubmissionOutcome
from worker.web.api_tokens import identify
from worker.web.console.common import ConsoleCore, csrf_ok, read_form, redirect
from worker.web.console.recent import LastResent, last_resent
from worker.web.console.sessions import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGNIN_CSRF_COOKIE,
    Session,
    client_of,
    same_token,
)

logger = logging.getLogger("tango_resend.console")

RESEND_FIELDS = ("referenceOrderID", "newEmail", "newMobile", "newEtid", "newDeliveryMethod")
Form = Annotated[dict[str, str], Depends(read_form)]


def add_actions(router: APIRouter, core: ConsoleCore) -> None:
    """Register the forms on `router`: each one's work is the function it names."""

    @router.get("/console/signin", include_in_schema=False)
    def signin_page(request: Request, next: str = "/console") -> Response:
        return _signin_form(core, request, next, "", 200)

    @router.post("/console/signin", include_in_schema=False)
    def signin(request: Request, form: Form) -> Response:
        return _signin(core, request, form)

    @router.post("/console/signout", include_in_schema=False)
    def signout(request: Request, form: Form) -> Response:
        return _signout(core, request, form)

    @router.post("/console/resends", include_in_schema=False)
    def resend(request: Request, form: Form) -> Response:
        return _acting(core, request, form, lambda session: _resend(core, request, session, form))

    @router.get("/console/requests/{request_id}/{action}", include_in_schema=False)
    def confirm(request: Request, request_id: str, action: str) -> Response:
        return _if_request_id(
            request_id,
            lambda: core.signed_in(
                request, lambda session: _confirm(core, request, session, request_id, action)
            ),
        )

    @router.post("/console/requests/{request_id}/cancel", include_in_schema=False)
    def cancel(request: Request, request_id: str, form: Form) -> Response:
        return _if_request_id(
            request_id,
            lambda: _acting(
                core, request, form, lambda session: _cancel(core, request, session, request_id)
            ),
        )

    @router.post("/console/requests/{request_id}/retry", include_in_schema=False)
    def retry(request: Request, request_id: str, form: Form) -> Response:
        return _if_request_id(
            request_id,
            lambda: _acting(
                core,
                request,
                form,
                lambda session: _retry(
                    core, request, session, request_id, form.get("include_permanent") == "1"
                ),
            ),
        )


def _if_request_id(request_id: str, answer: Callable[[], Response]) -> Response:
    """`answer()` when `request_id` has the shape of one, else 404: an id from the URL is
    checked before any use, since one holding a newline would reach log lines that name it."""
    return answer() if is_request_id(request_id) else Response(status_code=404)


def _signin(core: ConsoleCore, request: Request, form: dict[str, str]) -> Response:
    target = form.get("next", "/console")
    if not same_token(form.get("csrf"), request.cookies.get(SIGNIN_CSRF_COOKIE, "")):
        return _signin_form(core, request, target, "The form expired: try again.", 403)
    who = client_of(request)
    throttle = core.throttle
    wait = throttle.wait_seconds(who)
    if wait:
        message = f"Too many failed sign-ins from here: try again in {wait} s."
        return _signin_form(core, request, target, message, 429)
    identity = identify(core.settings, form.get("token", "").strip())
    if identity is None:
        wait = throttle.failed(who)
        logger.warning("console sign-in refused (wrong token) from %s", who)
        message = "That token is not valid." + (
            f" Too many failed sign-ins: wait {wait} s before the next try." if wait else ""
        )
        return _signin_form(core, request, target, message, 401)
    throttle.succeeded(who)
    cookie, _ = core.sessions.create(identity.role, form.get("token", "").strip(), identity.name)
    response = redirect(_local(target))
    _set_cookie(core, request, response, SESSION_COOKIE, cookie, SESSION_SECONDS)
    response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/console")
    logger.info("console sign-in of %s (%s) from %s", identity.name, identity.role.value, who)
    return response


def _signout(core: ConsoleCore, request: Request, form: dict[str, str]) -> Response:
    session = core.session(request)
    if session is not None and not csrf_ok(form, session):
        return core.csrf_refused(request, session)
    core.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = redirect("/console/signin")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


def _signin_form(
    core: ConsoleCore, request: Request, target: str, message: str, status: int
) -> Response:
    token = secrets.token_urlsafe(24)
    response = core.render(
        "signin.html", request, None, status=status, csrf=token, next=_local(target),
        message=message,
    )  # fmt: skip
    _set_cookie(core, request, response, SIGNIN_CSRF_COOKIE, token, 3600)
    return response


def _set_cookie(
    core: ConsoleCore, request: Request, response: Response, name: str, value: str, seconds: int
) -> None:
    """Every console cookie: the console's own, out of scripts' reach, never sent by another
    site, and over HTTPS only when the browser came over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=core.secure_cookies(request),
    )


def _local(target: str) -> str:
    """Only a page of the console itself: never an open redirect, nor a way out of /console
    by dot segments (`/console/../metrics`, escaped or not), which a browser would resolve."""
    parts = urlsplit(target)
    path = unquote(parts.path)
    if parts.scheme or parts.netloc or "\\" in path or not path.isprintable():
        return "/console"
    normal = posixpath.normpath(path)
    if normal != "/console" and not normal.startswith("/console/"):
        return "/console"
    return quote(normal) + (f"?{parts.query}" if parts.query else "")


def _acting(
    core: ConsoleCore, request: Request, form: dict[str, str], act: Callable[[Session], Response]
) -> Response:
    """`act` for a session allowed to act with this form, or the response refusing it."""
    session = core.session(request)
    if session is None:
        return core.to_signin(request)
    if not csrf_ok(form, session):
        return core.csrf_refused(request, session)
    if not session.role.may_act:
        return core.read_only_refused(request, session)
    return act(session)


def _resend(
    core: ConsoleCore, request: Request, session: Session, form: dict[str, str]
) -> Response:
    """Submit the form's resend. With the recent-resend guard on, "send anyway" (`force`)
    needs a second, explicit confirmation (`confirmed`): the first shows what was sent, to
    whom and when, and asks again."""
    fields = {name: form[name].strip() for name in RESEND_FIELDS if form.get(name, "").strip()}
    guard_on = core.settings.resend_recent_seconds > 0
    force = guard_on and form.get("force") == "1"
    if force and form.get("confirmed") != "1":
        if _last(fields.get("referenceOrderID")) is not None:
            return _confirm_send_anyway(core, request, session, form)
        force = False  # nothing sent in the last day: nothing to send anyway
    try:
        submission = producer.submit_resend(
            fields, origin=origins.console(session.agent), force=force
        )
    except InvalidResendRequest as error:
        return core.render(
            "home.html", request, session, status=422, form=form, errors=error.errors,
            last=_last(fields.get("referenceOrderID")),
        )  # fmt: skip
    except producer.RedisUnavailable:
        return _unavailable(core, request, session)
    logger.info(
        "console resend of %s by %s: %s%s",
        fields.get("referenceOrderID"), session.agent, submission.outcome,
        " (sent anyway)" if force else "",
    )  # fmt: skip
    if submission.outcome == SubmissionOutcome.RECENT:
        return core.render(
            "recent.html", request, session, status=409, form=form, earlier=submission.request_id,
            last=_last(fields.get("referenceOrderID")), step="choose",
        )  # fmt: skip
    return redirect(f"/console/requests/{submission.request_id}?{submission.outcome}=1")


def _confirm_send_anyway(
    core: ConsoleCore, request: Request, session: Session, form: dict[str, str]
) -> Response:
    """The second, explicit confirmation of a "send anyway" (a page that changes nothing)."""
    return core.render(
        "recent.html", request, session, form=form, earlier="",
        last=_last(form.get("referenceOrderID", "").strip()), step="confirm",
    )  # fmt: skip


def _last(order: str | None) -> LastResent | None:
    try:
        return last_resent(current_runtime(), order)
    except redis.RedisError:  # a warning that cannot be read must not stop the answer
        return None


def _confirm(
    core: ConsoleCore, request: Request, session: Session, request_id: str, action: str
) -> Response:
    """The confirmation page of a cancel or a retry (a GET: it changes nothing)."""
    record = producer.get_resend(request_id) if action in {"cancel", "retry"} else None
    if record is None:
        return Response(status_code=404)
    record = as_shown(current_runtime(), record)  # its state as every page names it
    permanent = retry.is_permanent_failure(record)
    return core.render(
        "confirm.html", request, session, record=record, action=action, permanent=permanent
    )


def _cancel(core: ConsoleCore, request: Request, session: Session, request_id: str) -> Response:
    try:
        result = producer.cancel_resend(request_id, by=origins.console(session.agent))
    except producer.RedisUnavailable:
        return _unavailable(core, request, session)
    return redirect(f"/console/requests/{request_id}?cancel={result}")


def _retry(
    core: ConsoleCore,
    request: Request,
    session: Session,
    request_id: str,
    include_permanent: bool = False,
) -> Response:
    """Retry a failed request; a permanent failure only when the form says so (a checkbox on
    the confirmation page): Tango would refuse it again."""
    try:
        submission = retry.retry_resend(
            request_id, by=origins.console(session.agent), include_permanent=include_permanent
        )
    except (retry.NotRetryable, InvalidResendRequest) as error:
        return core.render(
            "message.html", request, session, status=409, title="Not retried",
            message=str(error),
        )  # fmt: skip
    except producer.RedisUnavailable:
        return _unavailable(core, request, session)
    if submission.outcome == SubmissionOutcome.RECENT:
        return redirect(f"/console/requests/{submission.request_id}?recent=1")
    return redirect(f"/console/requests/{submission.request_id}?retry_of={request_id}")


def _unavailable(core: ConsoleCore, request: Request, session: Session) -> Response:
    return core.render(
        "message.html", request, session, status=503, title="Try again shortly",
        message="Redis cannot be reached right now: nothing was changed.",
    )  # fmt: skip
