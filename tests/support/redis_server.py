"""A `redis-server` of a test's own, for tests that stop, restart or misconfigure Redis.

Only this server is ever killed, restarted or has its clients dropped; the shared Redis the
other tests use (TEST_REDIS_URL) is never touched.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import redis

from tests.support.processes import free_port
from tests.support.waiting import wait_for

REDIS_SERVER = "/usr/bin/redis-server"
# A policy under which Redis may drop our data (tango-resend names it loudly).
EVICTING_POLICY = "allkeys-lru"


class RedisServer:
    """`redis-server` on a free loopback port, append-only file in `workdir`."""

    def __init__(
        self, workdir: Path, *, appendfsync: str = "everysec", extra_args: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendfsync = appendfsync
        # More redis-server options, e.g. ("--maxmemory-policy", "allkeys-lru").
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5
        )

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.starts += 1
        log = self.workdir / f"redis-{self.starts}.log"
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--logfile",
                str(log),
                "--daemonize",
                "no",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{log.read_text(errors='replace')}")
            with contextlib.closing(self.client()) as client:
                try:
                    return bool(client.ping())
                except redis.RedisError:  # refused, or still loading its AOF
                    return False

        wait_for(answers, timeout=timeout, interval=0.05, what="redis-server to answer")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: Redis writes and syncs its append-only file, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill_clients(self, kind: str) -> int:
        """`CLIENT KILL TYPE normal|pubsub` (our own connection reconnects when needed)."""
        with contextlib.closing(self.client()) as client:
            return int(client.execute_command("CLIENT", "KILL", "TYPE", kind))


def evicting_redis_server(workdir: Path) -> RedisServer:
    """A redis-server that evicts under memory pressure (EVICTING_POLICY); not started."""
    return RedisServer(workdir, extra_args=("--maxmemory-policy", EVICTING_POLICY))
