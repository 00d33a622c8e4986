"""What every console page shares: rendering, the session, forms and security headers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from worker.core.redaction import mask_email, mask_phone
from worker.core.settings import Settings
from worker.runtime import current_runtime
from worker.web.api_tokens import Role
from worker.web.console.fleet import WAIT_REASONS
from worker.web.console.sessions import (
    SESSION_COOKIE,
    Session,
    SessionStore,
    SignInThrottle,
    is_https,
    same_token,
    token_digest,
)

MAX_FORM_BYTES = 16 * 1024
R = TypeVar("R", bound=Response)
SECURITY_HEADERS = {
    # Our own script and styles only: no inline script, so injected markup cannot run.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """RFC 3339 in UTC to the second, as the console shows every time ("" for none)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def masked(fields: Mapping[str, str]) -> dict[str, str]:
    """A request's fields with contact data masked, for lists."""
    shown = dict(fields)
    if "newEmail" in shown:
        shown["newEmail"] = mask_email(shown["newEmail"])
    if "newMobile" in shown:
        shown["newMobile"] = mask_phone(shown["newMobile"])
    return shown


class ConsoleCore:
    """Templates, sessions and the throttle of one app's console."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.trust_proxy = settings.console_trust_proxy
        self._token_digests = {
            (token.name, Role(token.role)): token_digest(token.token.get_secret_value())
            for token in settings.named_tokens()
        }
        self._templates = Environment(
            loader=PackageLoader("worker.web.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self._templates.filters["when"] = when
        self._templates.filters["masked"] = masked
        self._templates.globals["waiting_words"] = WAIT_REASONS
        self._templates.globals["recent_seconds"] = settings.resend_recent_seconds

    @property
    def sessions(self) -> SessionStore:
        runtime = current_runtime()
        return SessionStore(runtime.redis, runtime.keys)

    @property
    def throttle(self) -> SignInThrottle:
        runtime = current_runtime()
        return SignInThrottle(runtime.redis, runtime.keys)

    def session(self, request: Request) -> Session | None:
        """The request's session, if its token is still one of this process's tokens."""
        session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is None or not same_token(
            session.token_digest, self._token_digests.get((session.agent, session.role), "-")
        ):
            return None
        return session

    def signed_in(self, request: Request, page: Callable[[Session], Response]) -> Response:
        """`page` for the request's session; without one, the sign-in form, which comes back
        to this page once signed in."""
        session = self.session(request)
        if session is None:
            return self.to_signin(request)
        return page(session)

    def render(
        self,
        name: str,
        request: Request,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        template = self._templates.get_template(name)
        html = template.render(request=request, session=session, **context)
        return secured(HTMLResponse(html, status_code=status))

    def to_signin(self, request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return secured(RedirectResponse(f"/console/signin?next={quote(target)}", 303))

    def csrf_refused(self, request: Request, session: Session | None) -> HTMLResponse:
        return self.render(
            "message.html",
            request,
            session,
            status=403,
            title="Refused",
            message="This form did not come from this console, or has expired (missing or "
            "wrong CSRF token). Reload the page and try again.",
        )

    def read_only_refused(self, request: Request, session: Session) -> HTMLResponse:
        return self.render(
            "message.html",
            request,
            session,
            status=403,
            title="Read-only",
            message="This session was opened with the read-only token: it may look, not act.",
        )

    def secure_cookies(self, request: Request) -> bool:
        return is_https(request, self.trust_proxy)


def secured(response: R) -> R:
    """The response with the console's security headers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form (the console's only kind), first value of each field."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items()}


def csrf_ok(form: Mapping[str, str], session: Session) -> bool:
    return same_token(form.get("csrf"), session.csrf)


def redirect(url: str) -> Response:
    return secured(RedirectResponse(url, 303))
