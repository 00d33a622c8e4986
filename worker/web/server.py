"""Serving the webhook receiver with uvicorn: one process, or several on one port.

Several processes are how the receiver scales on one host (`tango-resend web --workers N`):
each runs its own event loop and its own Redis clients. Each binds its own socket to the port
with SO_REUSEPORT, so the kernel spreads new connections over them. (uvicorn's own
`--workers` shares one listening socket instead: asyncio accepts every pending connection in
a loop, so a burst of keep-alive connections, a storm's senders, all land on whichever process
woke first, and the others idle.)

The sockets are made here for a second reason: uvicorn creates its socket with protocol 0,
and asyncio then leaves Nagle's algorithm on for every accepted connection (it sets
TCP_NODELAY only on sockets that say they are TCP), so a response written in two parts (head,
body) would wait for the client's delayed ACK, about 40 ms a request.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import signal
import socket
import sys
from types import FrameType

from worker.core.logging_setup import uvicorn_log_config
from worker.core.settings import Settings, get_settings

APP = "worker.web.app:create_app"
# A process that dies this soon after its start is not restarted: it would only die again.
_STARTUP_FAILURE_EXIT = 3

logger = logging.getLogger("tango_resend.web")


def serve(settings: Settings, host: str, port: int, workers: int, access_log: bool) -> None:
    """Run the receiver until stopped (SIGINT/SIGTERM end every process gracefully)."""
    if workers == 1:
        _serve_one(host, port, access_log, reuse_port=False)
        return
    _Supervisor(host, port, workers, access_log).run()


def tcp_listener(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket that says it is TCP, so asyncio turns Nagle off on its connections;
    with `reuse_port`, one of several processes' sockets on the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


def _serve_one(host: str, port: int, access_log: bool, reuse_port: bool) -> None:
    import uvicorn

    from worker.web.read_deadlines import protocol_with_deadlines

    settings = get_settings()
    config = uvicorn.Config(
        APP,
        factory=True,
        host=host,
        port=port,
        access_log=access_log,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings.log_format, settings.log_level),
        server_header=False,
        # Forwarded headers are read by worker/web/forwarded.py, and only when
        # CONSOLE_TRUST_PROXY says a proxy of ours sets them; uvicorn's own reading would
        # believe any client connecting through a same-host proxy.
        proxy_headers=False,
        limit_concurrency=settings.web_max_concurrency,
        http=protocol_with_deadlines(
            settings.web_header_timeout_seconds, settings.web_body_timeout_seconds
        ),
    )
    server = uvicorn.Server(config)
    sockets = [tcp_listener(host, port, reuse_port)]
    if settings.web_internal_port is not None:
        internal_host = settings.web_internal_host or host
        sockets.append(tcp_listener(internal_host, settings.web_internal_port, reuse_port))
        logger.info(
            "public port %s:%d serves POST /webhooks/resends and /healthz only; internal port "
            "%s:%d (WEB_INTERNAL_PORT) serves every route",
            host,
            port,
            internal_host,
            settings.web_internal_port,
        )
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(_STARTUP_FAILURE_EXIT)


class _Supervisor:
    """Starts N receiver processes, restarts one that dies, and stops them all on a signal."""

    def __init__(self, host: str, port: int, workers: int, access_log: bool) -> None:
        self._arguments = (host, port, access_log, True)
        self._workers = workers
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._stopping = False

    def run(self) -> None:
        settings = get_settings()
        logging.config.dictConfig(uvicorn_log_config(settings.log_format, settings.log_level))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        logger.info("Started parent process of %d receiver processes", self._workers)
        self._processes = [self._start() for _ in range(self._workers)]
        while not self._stopping:
            for index, process in enumerate(self._processes):
                process.join(timeout=0.5 / self._workers)
                if process.exitcode is None or self._stopping:
                    continue
                if process.exitcode == _STARTUP_FAILURE_EXIT:
                    logger.error("a receiver process could not start; stopping")
                    self._stop(signal.SIGTERM, None)
                    sys.exit(_STARTUP_FAILURE_EXIT)
                logger.warning(
                    "receiver process %s exited (%s); restarting it", process.pid, process.exitcode
                )
                self._processes[index] = self._start()
        for process in self._processes:
            process.join()

    def _start(self) -> multiprocessing.process.BaseProcess:
        process = self._context.Process(target=_serve_one, args=self._arguments)
        process.start()
        return process

    def _stop(self, signum: int, _: FrameType | None) -> None:
        self._stopping = True
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown in each
