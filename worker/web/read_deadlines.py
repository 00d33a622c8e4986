"""Read deadlines for slow clients: uvicorn's HTTP/1.1 protocol with a clock on each request.

uvicorn closes a kept-alive connection that stays silent, but a client that trickles its
headers, or its body, one byte at a time holds its connection (and, past the concurrency
limit, everyone's) for as long as it likes. This protocol gives each request
WEB_HEADER_TIMEOUT_SECONDS from its connection (or its first byte, on a kept-alive
connection) to the end of its headers, and WEB_BODY_TIMEOUT_SECONDS from there to the end
of its body; past either, the connection is closed (a 408 first when no request has begun).
The endpoint reading a body then sees the client gone, as if it had hung up: one log line.

Deadlines run on the whole phase, not on each read as nginx's client_header_timeout and
client_body_timeout do: a client sending a byte every few seconds never resets them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("tango_resend.web")

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nRequest Timeout\n"
)

_PHASES = {
    "headers": ("request headers", "WEB_HEADER_TIMEOUT_SECONDS"),
    "body": ("body", "WEB_BODY_TIMEOUT_SECONDS"),
}


def protocol_with_deadlines(header_seconds: float, body_seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol (the one `uvicorn.Config(http=...)` is given) with these
    deadlines."""
    return type(
        "DeadlineH11Protocol",
        (DeadlineH11Protocol,),
        {"header_seconds": header_seconds, "body_seconds": body_seconds},
    )


class DeadlineH11Protocol(H11Protocol):
    """H11Protocol with a deadline on each phase of reading a request."""

    header_seconds = 10.0
    body_seconds = 20.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for a next request is the keep-alive timeout's business, until its first
        # byte arrives (data_received).
        if self.conn.their_state is h11.IDLE:
            self._enter(None)
        else:
            self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter(None)
        super().connection_lost(exc)

    def _follow_request(self) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:
            self._enter("headers")
        elif state is h11.SEND_BODY:
            self._enter("body")
        else:  # DONE, or closed: the request is read
            self._enter(None)

    def _enter(self, phase: str | None) -> None:
        if phase == self._phase:
            return  # the deadline runs on the whole phase
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            seconds = self.header_seconds if phase == "headers" else self.body_seconds
            self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _expired(self, phase: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        what, setting = _PHASES[phase]
        logger.warning(
            "%s sent no complete %s within %g s (%s); connection closed",
            client,
            what,
            seconds,
            setting,
        )
        if phase == "headers" and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_TIMED_OUT)
        self.transport.close()
