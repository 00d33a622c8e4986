"""What every request meets before any route: which port may serve it, and the HSTS header.

With WEB_INTERNAL_PORT set, the web process listens on two ports: the public one, published
to the internet for senders of webhooks, serves only the webhook route and /healthz; the
internal one (the office's) serves everything, the console, the REST API, /docs and /metrics
included. Which port a request came in on is the socket's own (ASGI `server`), never a
header.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/webhooks/resends", "/healthz"})

_NOT_HERE = json.dumps(
    {"error": "not_found", "message": "not served on this port"}, separators=(",", ":")
).encode()


class PublicPortOnly:
    """ASGI middleware: on any port but `internal_port`, only PUBLIC_PATHS exist (404)."""

    def __init__(self, app: ASGIApp, internal_port: int) -> None:
        self._app = app
        self._internal_port = internal_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        public = scope["type"] == "http" and not self._internal(scope)
        if public and scope["path"] not in PUBLIC_PATHS:
            await _not_found(send)
            return
        await self._app(scope, receive, send)

    def _internal(self, scope: Scope) -> bool:
        server = scope.get("server")
        return server is not None and server[1] == self._internal_port


async def _not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_NOT_HERE)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _NOT_HERE})


class StrictTransportSecurity:
    """ASGI middleware: `Strict-Transport-Security: max-age=N` on every answer to a request
    that came over HTTPS (browsers ignore it over plain HTTP, and a proxy's word for the
    scheme counts only when trusted: worker/web/forwarded.py)."""

    def __init__(self, app: ASGIApp, max_age_seconds: int) -> None:
        self._app = app
        self._header = (b"strict-transport-security", f"max-age={max_age_seconds}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self._app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._header]
            await send(message)

        await self._app(scope, receive, send_with_header)
