"""Real processes for tests: workers and the web receiver, polling with deadlines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment for a child process: ours, the repo importable, and the test settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


class LoggedProcess:
    """`python ARGUMENTS` in its own session, output in a log file; stopped as a group."""

    def __init__(self, settings: dict[str, str], log_path: Path, arguments: list[str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *arguments],
            env=child_env(settings),
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown, no acknowledgements."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class WorkerProcess(LoggedProcess):
    """`python -m worker worker`."""

    def __init__(
        self,
        settings: dict[str, str],
        log_path: Path,
        *,
        concurrency: int = 8,
        pool: str = "threads",
        name: str = "w1",
        command: list[str] | None = None,
    ) -> None:
        arguments = command or [
            "-m",
            "worker",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            f"--hostname={name}@%h",
        ]
        super().__init__(settings, log_path, arguments)

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            return " ready." in self.log()

        wait_for(ready, timeout=timeout, what="the worker to be ready")
        return self


class WebProcess(LoggedProcess):
    """`python -m worker web --port P` on a free loopback port."""

    def __init__(
        self, settings: dict[str, str], log_path: Path, extra_arguments: list[str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        arguments = ["-m", "worker", "web", "--port", str(self.port), *(extra_arguments or [])]
        super().__init__(settings, log_path, arguments)

    def wait_ready(self, timeout: float = 30.0) -> WebProcess:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the web receiver exited early:\n{self.log()}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=timeout, interval=0.1, what="the web receiver")
        return self
