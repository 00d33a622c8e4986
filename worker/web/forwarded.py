"""Who the client is behind a proxy we trust, and nobody's word for it otherwise.

uvicorn's own proxy handling is off (`proxy_headers=False` in worker/web/server.py): it
believes X-Forwarded-For from 127.0.0.1, so a client behind a same-host proxy that sets no
such header could name any address it liked. With CONSOLE_TRUST_PROXY=true this middleware
rewrites the request's client and scheme from the headers instead, reading X-Forwarded-For
from the right: a proxy such as nginx (`$proxy_add_x_forwarded_for`) or a cloud load balancer
appends the address it saw AFTER whatever the client wrote, so only the last
TRUSTED_PROXY_HOPS entries were written by proxies of ours. The receiver, the REST API, the
console, their throttles and the access log all see the address this decides.
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("tango_resend.web")


def forwarded_client(values: list[str], hops: int) -> str | None:
    """The client's address: the entry `hops` places from the end of X-Forwarded-For (every
    header line of it, in order), or None when the chain is shorter or that entry is no IP
    address (then the connection's peer stands)."""
    entries = [entry.strip() for value in values for entry in value.split(",")]
    entries = [entry for entry in entries if entry]
    if len(entries) < hops:
        return None
    return _address(entries[-hops])


def forwarded_scheme(values: list[str], hops: int) -> str | None:
    """The scheme the client used per X-Forwarded-Proto (`http` or `https`), read like
    X-Forwarded-For; most proxies set a single value, which then counts."""
    entries = [entry.strip().lower() for value in values for entry in value.split(",")]
    entries = [entry for entry in entries if entry]
    if not entries:
        return None
    scheme = entries[max(len(entries) - hops, 0)]
    return scheme if scheme in {"http", "https"} else None


def _address(entry: str) -> str | None:
    """An IP address from `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`."""
    candidates = [entry]
    if entry.startswith("[") and "]" in entry:
        candidates = [entry[1 : entry.index("]")]]
    elif entry.count(":") == 1:
        candidates.append(entry.partition(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


class TrustedProxyHeaders:
    """ASGI middleware: the request's client and scheme as our proxies tell them."""

    def __init__(self, app: ASGIApp, hops: int) -> None:
        self._app = app
        self._hops = hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            forwarded_for: list[str] = []
            forwarded_proto: list[str] = []
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    forwarded_proto.append(value.decode("latin-1"))
            client = forwarded_client(forwarded_for, self._hops)
            if client is not None:
                # In place: uvicorn's access log reads this same dict after the response.
                scope["client"] = (client, 0)
            scheme = forwarded_scheme(forwarded_proto, self._hops)
            if scheme is not None:
                scope["scheme"] = scheme
        await self._app(scope, receive, send)


class UntrustedProxyNotice:
    """ASGI middleware for CONSOLE_TRUST_PROXY=false: says once, the first time a request
    carries X-Forwarded-For, that the header is ignored. Behind a proxy, every client then
    shares the proxy's address, and so one throttle: an operator should know."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._said = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._said and scope["type"] == "http" and _names_a_client(scope):
            self._said = True
            logger.warning(
                "X-Forwarded-For ignored (CONSOLE_TRUST_PROXY=false): clients are known by "
                "their connection's address. Behind a proxy of yours, set "
                "CONSOLE_TRUST_PROXY=true (and TRUSTED_PROXY_HOPS), or every client "
                "shares its address and one throttle"
            )
        await self._app(scope, receive, send)


def _names_a_client(scope: Scope) -> bool:
    return any(name == b"x-forwarded-for" for name, _ in scope["headers"])
