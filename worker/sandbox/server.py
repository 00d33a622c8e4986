"""The sandbox server object that tests, the demo and the CLI start and stop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any

from .handlers import SandboxHTTPServer
from .models import SandboxConfig
from .state import SandboxState

# How often the accept loop checks for stop(): the bound on how long stop() takes.
_POLL_INTERVAL = 0.05


class SandboxServer:
    """A loopback simulator of the Tango RaaS v2 endpoints the worker uses.

    The socket is bound on construction, so ``base_url`` is known before
    ``start``. Use as a context manager to start and stop it around a block.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cooldown_seconds: float = 30.0,
        platform_name: str = "sandbox-platform",
        platform_key: str = "sandbox-key",
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",
        token_ttl_seconds: int = 86400,
        clock_offset_seconds: float = 0.0,
        last_sent_format: str = "iso",
        rate_limit: float = 0.0,
    ) -> None:
        """Binds the server; nothing is served until ``start`` or ``serve_forever``.

        Args:
            host: Interface to listen on.
            port: TCP port; 0 picks a free one.
            cooldown_seconds: Per-order resend window.
            platform_name: HTTP Basic user name for the RaaS routes.
            platform_key: HTTP Basic password for the RaaS routes.
            client_id: OAuth client id for ``/oauth/token``.
            client_secret: OAuth client secret for ``/oauth/token``.
            token_ttl_seconds: Lifetime of issued bearer tokens.
            clock_offset_seconds: Sandbox clock minus host clock.
            last_sent_format: Rendering of the last resend time in 403.005
                (``iso``, ``iso-seconds``, ``epoch-ms``, ``java``, ``garbage``).
            rate_limit: Platform limit on authenticated RaaS calls, in calls per
                second (fractions allowed); 0 (the default) turns it off.

        Raises:
            ValueError: On an unknown ``last_sent_format`` or out-of-range setting.
            OSError: If the address cannot be bound.
        """
        config = SandboxConfig(
            cooldown_seconds=cooldown_seconds,
            platform_name=platform_name,
            platform_key=platform_key,
            client_id=client_id,
            client_secret=client_secret,
            token_ttl_seconds=token_ttl_seconds,
            clock_offset_seconds=clock_offset_seconds,
            last_sent_format=last_sent_format,
            rate_limit=rate_limit,
        )
        self.state = SandboxState(config)
        self._httpd = SandboxHTTPServer((host, port), self.state)
        self._host = host
        self._port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False

    @property
    def host(self) -> str:
        """The host the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when 0 was asked for)."""
        return self._port

    @property
    def control_url(self) -> str:
        """Root URL of the server, where the ``/_sandbox`` controls live."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The RaaS v2 base URL to configure the worker with."""
        return f"{self.control_url}/raas/v2"

    @property
    def token_url(self) -> str:
        """The OAuth token URL to configure the worker with."""
        return f"{self.control_url}/oauth/token"

    def start(self) -> SandboxServer:
        """Serves in a daemon thread.

        Returns:
            This server, for chaining.

        Raises:
            RuntimeError: If already serving or stopped.
        """
        self._claim()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"tango-sandbox-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serves in the calling thread until ``stop`` is called from another thread.

        Raises:
            RuntimeError: If already serving or stopped.
        """
        self._claim()
        try:
            self._httpd.serve_forever(poll_interval=_POLL_INTERVAL)
        finally:
            self._close()

    def stop(self) -> None:
        """Stops serving, closes the listening socket and open connections; idempotent."""
        if self._serving:
            self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def _claim(self) -> None:
        if self._serving or self._closed:
            raise RuntimeError("sandbox server is already running or has been stopped")
        self._serving = True

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.server_close()
        self._httpd.close_connections()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main_serve(
    host: str,
    port: int,
    cooldown_seconds: float,
    *,
    orders: Iterable[str] = (),
    **kwargs: Any,
) -> None:
    """Runs a sandbox in the foreground until SIGINT or SIGTERM.

    Args:
        host: Interface to listen on.
        port: TCP port; 0 picks a free one.
        cooldown_seconds: Per-order resend window.
        orders: Reference order ids to create (with default contact data) at start.
        **kwargs: Any other ``SandboxServer`` keyword argument, e.g. ``rate_limit``.
    """
    server = SandboxServer(host, port, cooldown_seconds=cooldown_seconds, **kwargs)
    for reference_order_id in orders:
        server.state.add_order(reference_order_id)
    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    # Python only lets the main thread install signal handlers; called from
    # another thread, the sandbox serves until the process ends.
    in_main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if in_main_thread else ()
    previous = {signum: signal.signal(signum, _request_stop) for signum in signals}
    try:
        server.start()
        print(
            f"Tango sandbox listening on {server.base_url} (token URL {server.token_url})",
            flush=True,
        )
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop_requested.wait(0.5):
            pass
    finally:
        server.stop()
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot restore
                signal.signal(signum, handler)
