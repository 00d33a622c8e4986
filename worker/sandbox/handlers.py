"""HTTP plumbing: parses requests, routes them, and writes (or sabotages) answers."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from .formats import http_date
from .responses import Request, Response, phrase, tango_error
from .routes import Route, match_route
from .state import SandboxState

MAX_BODY_BYTES = 64 * 1024
RAAS_PREFIX = "/raas/v2/"
_MAX_LINE = 65536


def _parse_json(body: bytes) -> tuple[Any, bool]:
    if not body.strip():
        return None, True
    try:
        return json.loads(body), True
    except ValueError:
        return None, False


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the sandbox state and its open sockets."""

    daemon_threads = True
    allow_reuse_address = True
    # Stalled fault threads must not hold up stop().
    block_on_close = False

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        """Binds the listening socket.

        Args:
            address: ``(host, port)``; port 0 picks a free port.
            state: The state shared by every request.
        """
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxRequestHandler)

    def server_bind(self) -> None:
        """Binds without HTTPServer's reverse DNS lookup, which can stall for seconds."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        """Remembers an open client connection so ``close_connections`` can end it."""
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        """Forgets a client connection that has been closed."""
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shuts every open keep-alive connection so its handler thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stays silent when a client hung up; reports anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Turns one HTTP request into a ``Request``, routes it and writes the ``Response``."""

    protocol_version = "HTTP/1.1"
    server_version = "tango-sandbox"
    sys_version = ""
    # Idle keep-alive connections are dropped after this; clients reconnect.
    timeout = 30.0
    # Headers and body go out in separate writes; with Nagle on, the client's
    # delayed ACK would add ~40 ms to every answer.
    disable_nagle_algorithm = True

    @property
    def _sandbox(self) -> SandboxHTTPServer:
        return cast(SandboxHTTPServer, self.server)

    def setup(self) -> None:
        """Registers the connection with the server."""
        super().setup()
        self._sandbox.track(self.connection)

    def finish(self) -> None:
        """Unregisters the connection from the server."""
        try:
            super().finish()
        finally:
            self._sandbox.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Logs nothing: request lines could carry emails, and tests want quiet."""

    def do_GET(self) -> None:
        """Dispatches a GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Dispatches a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Dispatches a PUT (always 404/405)."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Dispatches a PATCH (always 404/405)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Dispatches a DELETE (always 404/405)."""
        self._dispatch()

    def _read_chunked(self) -> tuple[bytes, int | None]:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return b"", 400
            if size == 0:
                while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers carry nothing we use
                return b"".join(chunks), None
            total += size
            if total > MAX_BODY_BYTES:
                return b"", 413
            chunks.append(self.rfile.read(size))
            self.rfile.readline(_MAX_LINE)

    def _read_body(self) -> tuple[bytes, int | None]:
        """Reads the body; the int is an error status that must close the connection."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b"", None
        try:
            length = int(raw_length)
        except ValueError:
            return b"", 400
        if length < 0:
            return b"", 400
        if length > MAX_BODY_BYTES:
            return b"", 413
        return self.rfile.read(length), None

    def _dispatch(self) -> None:
        state = self._sandbox.state
        received_at = state.now()
        split = urlsplit(self.path)
        route, path_id, allowed = match_route(self.command, split.path)
        body, body_problem = self._read_body()
        json_body, body_is_json = _parse_json(body)
        authorization = self.headers.get("Authorization")
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            body=body,
            json_body=json_body,
            body_is_json=body_is_json,
            content_type=self.headers.get("Content-Type", ""),
            authorization=authorization,
            auth=state.classify_auth(authorization),
            request_id=str(uuid.uuid4()),
            received_at=received_at,
        )
        call_id = None
        if split.path.startswith(RAAS_PREFIX):
            probe = self.headers.get("X-Tango-Resend-Probe") is not None
            call_id = state.begin_call(request, path_id, probe=probe)
        response = self._respond(request, route, path_id, allowed, body_problem)
        self._write(request, response, call_id)

    def _respond(
        self,
        request: Request,
        route: Route | None,
        path_id: str | None,
        allowed: list[str],
        body_problem: int | None,
    ) -> Response:
        state = self._sandbox.state
        if body_problem is not None:
            # The unread body would be parsed as the next request: hang up after.
            response = tango_error(
                request, state.now(), body_problem, f"{body_problem}.000", phrase(body_problem)
            )
            response.close = True
            return response
        if route is None:
            if allowed:
                response = tango_error(request, state.now(), 405, "405.000", phrase(405))
                response.headers["Allow"] = ", ".join(sorted(set(allowed)))
                return response
            return tango_error(request, state.now(), 404, "404.000", phrase(404))
        try:
            return route.handler(request, state, path_id)
        except Exception:  # a sandbox bug must look like a Tango 500, not a hang
            return tango_error(request, state.now(), 500, "500.000", "Sandbox internal error")

    def _write(self, request: Request, response: Response, call_id: int | None) -> None:
        state = self._sandbox.state
        if response.delay_after > 0:
            time.sleep(response.delay_after)
        if response.reset:
            if call_id is not None:
                state.finish_call(call_id, status=None, i18n_key=None)
            self._reset_connection()
            return
        if call_id is not None:
            # Before the bytes leave, so a client that just got its answer sees it logged.
            state.finish_call(call_id, status=response.status, i18n_key=response.i18n_key)
        self.send_response_only(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Date", http_date(state.now()))
        self.send_header("X-REQUEST-ID", request.request_id)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    def _reset_connection(self) -> None:
        # Linger 0 makes close() send RST instead of FIN: the client sees a reset
        # connection, not a clean end of stream.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
