"""Real processes for tests and bench: `python -m worker worker|web` and other children, each in
a session of its own with its output in a log file, and stopped as a process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path

import requests

from tests.support.settings import SETTING_NAMES
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(settings: Mapping[str, str], root: Path = REPO_ROOT) -> dict[str, str]:
    """A child's environment: ours without pytest's variables and without any tango-resend
    setting (a child has only the settings it is given), the repo (`root`: this checkout,
    unless another one's code runs) importable first, then `settings`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTEST") and key not in SETTING_NAMES
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def run_python(
    arguments: Sequence[str], settings: Mapping[str, str], *, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`python ARGUMENTS` run to its end in the repo with `settings`; output captured as text."""
    return subprocess.run(
        [sys.executable, *arguments],
        env=child_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def piped_python(
    arguments: Sequence[str], settings: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`python ARGUMENTS` in the repo with its output piped (a server says where it listens on
    its first line); at the end SIGTERM if it still runs, SIGKILL should it linger."""
    process = subprocess.Popen(
        [sys.executable, *arguments],
        env=child_env(settings or {}),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def worker_arguments(
    name: str, *, concurrency: int = 8, pool: str = "threads", loglevel: str = "INFO"
) -> list[str]:
    """`tango-resend worker`'s arguments for one named worker (after `-m worker`)."""
    return [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--hostname={name}@%h",
    ]


class ProcessExited(AssertionError):
    """A process exited while it was waited for."""


class LoggedProcess:
    """`python ARGUMENTS` in its own session, output in a log file; stopped as a group."""

    what = "the process"

    def __init__(
        self,
        settings: Mapping[str, str],
        log_path: Path,
        arguments: Sequence[str],
        *,
        cwd: Path = REPO_ROOT,
        python: str = sys.executable,
        root: Path = REPO_ROOT,
    ) -> None:
        """`python` and `root`: another checkout's interpreter and code (bench/cost_before.py
        measures the code before a change with them)."""
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [python, *arguments],
            env=child_env(settings, root),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ProcessExited(
                f"{self.what} exited early with {self.process.returncode}:\n{self.log()}"
            )

    def wait_until(
        self, probe: Callable[[], object], *, timeout: float, what: str, interval: float = 0.05
    ) -> None:
        """Poll `probe` until it is truthy; fail at once should the process exit meanwhile."""

        def alive_and_true() -> bool:
            self.check_alive()
            return bool(probe())

        wait_for(alive_and_true, timeout=timeout, interval=interval, what=what)

    def terminate(self) -> float:
        """SIGTERM to the whole group (for a worker, Celery's warm shutdown: running tasks
        finish, the rest are restored); returns when it was sent (time.time())."""
        sent_at = time.time()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        return sent_at

    def kill(self) -> float:
        """SIGKILL the whole group (no shutdown, no acknowledgements); returns when."""
        sent_at = time.time()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        return sent_at

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if the group has not exited after `timeout` seconds."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class WorkerProcess(LoggedProcess):
    """`python -m worker worker` (or another `command`), ready once it logs " ready."."""

    what = "the worker"

    def __init__(
        self,
        settings: Mapping[str, str],
        log_path: Path,
        *,
        concurrency: int = 8,
        pool: str = "threads",
        name: str = "w1",
        command: Sequence[str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        arguments = command or [
            "-m",
            "worker",
            *worker_arguments(name, concurrency=concurrency, pool=pool),
        ]
        super().__init__(settings, log_path, arguments, cwd=cwd)

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        self.wait_until(
            lambda: " ready." in self.log(), timeout=timeout, what="the worker to be ready"
        )
        return self


class WebProcess(LoggedProcess):
    """`python -m worker web --port P` (or another `command` given `--port P`) on a free
    loopback port."""

    what = "the web receiver"

    def __init__(
        self,
        settings: Mapping[str, str],
        log_path: Path,
        extra_arguments: Sequence[str] = (),
        *,
        command: Sequence[str] = ("-m", "worker", "web"),
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        arguments = [*command, "--port", str(self.port), *extra_arguments]
        super().__init__(settings, log_path, arguments, cwd=cwd)

    def wait_ready(
        self, timeout: float = 30.0, *, path: str = "/healthz", statuses: Collection[int] = (200,)
    ) -> WebProcess:
        """Ready once `path` answers one of `statuses`."""

        def up() -> bool:
            try:
                return requests.get(f"{self.url}{path}", timeout=2).status_code in statuses
            except requests.RequestException:
                return False

        self.wait_until(up, timeout=timeout, interval=0.1, what=f"{self.what} to answer")
        return self


WorkerFactory = Callable[..., WorkerProcess]
WebFactory = Callable[..., WebProcess]


class StartedProcesses:
    """The processes one test started, all stopped at its end (`stop_all`)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._started: list[LoggedProcess] = []

    def worker(
        self,
        settings: Mapping[str, str],
        name: str = "w1",
        *,
        concurrency: int = 8,
        wait: bool = True,
        ready_timeout: float = 60.0,
        command: Sequence[str] | None = None,
    ) -> WorkerProcess:
        """`command`: another command line than `python -m worker worker ...` (see
        WorkerProcess)."""
        process = WorkerProcess(
            settings,
            self.log_dir / f"{name}.log",
            concurrency=concurrency,
            name=name,
            command=command,
        )
        self._started.append(process)
        return process.wait_ready(ready_timeout) if wait else process

    def web(
        self, settings: Mapping[str, str], name: str = "web", *, ready_timeout: float = 60.0
    ) -> WebProcess:
        process = WebProcess(settings, self.log_dir / f"{name}.log")
        self._started.append(process)
        return process.wait_ready(ready_timeout)

    def stop_all(self) -> None:
        for process in self._started:
            process.stop()
        self._started.clear()
