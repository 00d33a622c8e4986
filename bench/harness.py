"""Processes and probes: Redis, the sandbox subprocess, worker subprocesses, CPU sampling."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis

from tests.support import waiting
from tests.support.processes import REPO_ROOT, LoggedProcess, child_env, worker_arguments
from tests.support.redis_db import redis_now
from tests.support.sandbox import resend_settings
from tests.support.settings import SETTING_NAMES, apply_settings, new_tag
from worker.sandbox import SandboxControl

PLATFORM_NAME = "bench-platform"
PLATFORM_KEY = "bench-key-8Hq2vX3m"
T = TypeVar("T")

# tests/support's wait_for (a TimeoutError past its deadline), polling less often by default:
# a probe's own cost lands in the figures.
wait_for = functools.partial(waiting.wait_for, interval=0.05)


def use_settings(settings: Mapping[str, str]) -> None:
    """Make this process (the producer) use `settings`, as a worker started with them would;
    no other tango-resend setting from the caller's shell is left in the environment."""
    for name in SETTING_NAMES:
        os.environ.pop(name, None)
    apply_settings(settings, os.environ.__setitem__)


def worker_settings(
    *,
    redis_url: str,
    prefix: str,
    base_url: str,
    window_seconds: float,
    rate_limit: float = 0.0,
    **extra: str,
) -> dict[str, str]:
    """Settings for a run: its own key prefix and queue, the sandbox, a short window."""
    defaults = {
        "TANGO_TIMEOUT_SECONDS": "10",
        "TANGO_CONNECT_TIMEOUT_SECONDS": "3",
        # One line per state change would make the log, not the pipeline, the thing measured.
        "LOG_LEVEL": "WARNING",
    }
    return resend_settings(
        redis_url=redis_url,
        prefix=prefix,
        base_url=base_url,
        window_seconds=window_seconds,
        rate_limit=rate_limit,
        platform=(PLATFORM_NAME, PLATFORM_KEY),
        **{**defaults, **extra},
    )


class RedisProbe:
    """The benchmark's Redis database: flush, clock, INFO figures."""

    def __init__(self, url: str, client: redis.Redis | None = None) -> None:
        """`client`: one built for a Redis `from_url` cannot reach alone (TLS with a CA file,
        Sentinel); it must decode responses."""
        self.url = url
        self.client: redis.Redis = client or redis.Redis.from_url(url, decode_responses=True)

    def flush(self) -> None:
        self.client.flushdb()

    def now(self) -> float:
        """Redis's clock (what every due time and window is judged on)."""
        return redis_now(self.client)

    def commandstats(self) -> dict[str, int]:
        """Calls per command since the server started (server-wide, every database)."""
        info: dict[str, Any] = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in info.items()}

    def used_memory(self) -> int:
        """Redis's memory less its clients' buffers (`mem_clients_normal`, about 20 KB per
        connection): those are per connection, not per request, and a worker keeps one
        connection per thread (worker/state/thread_connections.py)."""
        info = self.client.info("memory")
        return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def subscribers(self, channel: str) -> int:
        reply = self.client.pubsub_numsub(channel)
        return int(reply[0][1]) if reply else 0

    def close(self) -> None:
        self.client.close()


class CommandMonitor:
    """Counts the commands one database receives, with Redis's MONITOR (in a thread).

    INFO commandstats is server-wide; on a shared Redis other clients' commands land in it too.
    MONITOR names each command's database, so this count is ours alone. Commands a Lua script
    runs are reported as from `lua`; they are counted apart from client commands.
    """

    def __init__(self, url: str) -> None:
        options = redis.Redis.from_url(url).connection_pool.connection_kwargs
        self._db = int(options.get("db", 0))
        self._host = str(options.get("host", "127.0.0.1"))
        self._port = int(options.get("port", 6379))
        self.client_commands: dict[str, int] = {}
        self.script_commands: dict[str, int] = {}
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> CommandMonitor:
        self._socket = socket.create_connection((self._host, self._port), timeout=10)
        self._socket.settimeout(None)
        self._socket.sendall(b"MONITOR\r\n")
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MONITOR did not start")
        return self

    def _read(self) -> None:
        assert self._socket is not None
        reader = self._socket.makefile("rb")
        prefix = f"[{self._db} ".encode()
        try:
            for raw in reader:
                if raw.startswith(b"+OK"):
                    self._ready.set()
                    continue
                start = raw.find(b" [")
                if start < 0 or not raw[start + 1 :].startswith(prefix):
                    continue
                close = raw.find(b"] ", start)
                source = raw[start + 2 + len(prefix) - 1 : close]
                name_start = raw.find(b'"', close) + 1
                name = raw[name_start : raw.find(b'"', name_start)].decode().lower()
                table = self.script_commands if source == b"lua" else self.client_commands
                table[name] = table.get(name, 0) + 1
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def commandstats_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: calls for name, calls in sorted(delta.items()) if calls > 0}


class Sandbox:
    """The bundled Tango sandbox in its own process (`python -m bench.sandbox_proc`).

    Orders are created at start from a file (the control API adds one per HTTP call, too slow
    for thousands). Latency is the sandbox's own fault mechanism: `latency_calls` queued
    faults for any order, each stalling one resend call `latency` seconds before processing.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        orders: Sequence[str],
        cooldown_seconds: float,
        rate_limit: float = 0.0,
        latency_seconds: float = 0.0,
        latency_calls: int = 0,
    ) -> None:
        tag = new_tag()
        orders_file = log_dir / f"sandbox-{tag}-orders.txt"
        orders_file.write_text("\n".join(orders))
        self._log = (log_dir / f"sandbox-{tag}.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sandbox_proc",
                f"--cooldown={cooldown_seconds:g}",
                f"--rate-limit={rate_limit:g}",
                f"--latency={latency_seconds:g}",
                f"--latency-calls={latency_calls}",
                f"--orders-file={orders_file}",
                f"--platform-name={PLATFORM_NAME}",
                f"--platform-key={PLATFORM_KEY}",
            ],
            env=child_env({}),
            cwd=log_dir,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self.control_url = self._read_ready_line(timeout=60)
        self.base_url = self.control_url + "/raas/v2"
        self.control = SandboxControl(self.control_url)
        self.ps = psutil.Process(self.process.pid)
        orders_file.unlink()

    def _read_ready_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"sandbox did not start (got {line!r})")
        return line.removeprefix("READY ")

    def calls(self) -> list[dict[str, Any]]:
        return self.control.calls()

    def accepted(self) -> int:
        return self.control.stats()["accepted"]

    def stats(self) -> dict[str, int]:
        return self.control.stats()

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def tree_cpu_seconds(root: psutil.Process) -> float:
    """CPU seconds (user + system) of a process and its children, the exited ones left out."""
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class WorkerProcess(LoggedProcess):
    """A Celery worker subprocess (ours or the plain/naive peer), its output in a log file in
    the run's log directory (also its working directory: no developer's .env is read).

    `python` and `root`: another checkout's interpreter and code (bench/cost_before.py)."""

    what = "the worker"

    def __init__(
        self,
        arguments: Sequence[str],
        settings: Mapping[str, str],
        log_path: Path,
        *,
        python: str = sys.executable,
        root: Path = REPO_ROOT,
    ):
        super().__init__(
            settings, log_path, arguments, cwd=log_path.parent, python=python, root=root
        )
        self.ps = psutil.Process(self.process.pid)

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 60.0) -> WorkerProcess:
        self.wait_until(probe, timeout=timeout, what="the worker to be ready")
        return self

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.ps)

    def rss_bytes(self) -> int:
        total = 0
        for process in self._tree():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total


def start_our_worker(
    settings: Mapping[str, str],
    log_dir: Path,
    probe: RedisProbe,
    *,
    concurrency: int,
    name: str = "w1",
    pool: str = "threads",
    wrapper: Sequence[str] = (),
    python: str = sys.executable,
    root: Path = REPO_ROOT,
) -> WorkerProcess:
    """`python -m worker worker`; ready once its scheduler subscribed to the wake-up channel.

    `wrapper` runs it under another module (the profiler), e.g. `["-m", "bench.profile_worker",
    "--out", path, "--"]`, in place of `-m worker`. `python` and `root`: another checkout's.
    """
    channel = f"{settings['REDIS_KEY_PREFIX']}:scheduler:wakeup"
    before = probe.subscribers(channel)
    target = ["-m", "worker"] if not wrapper else []
    loglevel = settings.get("LOG_LEVEL", "WARNING")
    arguments = [
        *wrapper,
        *target,
        *worker_arguments(
            f"{name}-{new_tag()}", concurrency=concurrency, pool=pool, loglevel=loglevel
        ),
    ]
    worker = WorkerProcess(
        arguments, settings, log_dir / f"{name}-{new_tag()}.log", python=python, root=root
    )
    return worker.wait_ready(lambda: probe.subscribers(channel) > before)


def start_peer_worker(
    settings: Mapping[str, str],
    log_dir: Path,
    probe: RedisProbe,
    *,
    concurrency: int,
    name: str = "peer",
    wrapper: Sequence[str] = (),
) -> WorkerProcess:
    """A worker of `bench.naive_app` (the plain and the naive task), same pool and options.

    `wrapper` runs it under another module in place of `-m celery` (the cost sampler)."""
    ready_key = f"{settings['RESEND_QUEUE']}:ready"
    before = int(probe.client.get(ready_key) or 0)
    arguments = [
        *(wrapper or ["-m", "celery"]),
        "-A",
        "bench.naive_app",
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={settings['RESEND_QUEUE']}",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={name}-{new_tag()}@%h",
        "--loglevel=WARNING",
    ]
    worker = WorkerProcess(arguments, settings, log_dir / f"{name}-{new_tag()}.log")
    return worker.wait_ready(lambda: int(probe.client.get(ready_key) or 0) > before)


@dataclass
class Sample:
    at: float  # time.time()
    cpu_seconds: dict[str, float]
    rss_bytes: dict[str, int]
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class CpuSampler:
    """Samples CPU time and RSS of named processes in a background thread."""

    sources: dict[str, WorkerProcess | Sandbox]
    interval: float = 0.25
    # Other figures to record with each sample, e.g. how many requests are parked.
    probes: dict[str, Callable[[], float]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        for name, source in self.sources.items():
            try:
                cpu[name] = source.cpu_seconds()
                rss[name] = (
                    source.rss_bytes()
                    if isinstance(source, WorkerProcess)
                    else int(source.ps.memory_info().rss)
                )
            except psutil.Error:
                continue
        extra: dict[str, float] = {}
        for name, probe in self.probes.items():
            try:
                extra[name] = probe()
            except Exception:  # a failed probe only leaves a gap in the plot
                continue
        self.samples.append(Sample(time.time(), cpu, rss, extra))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def start(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def cpu_percent_series(self, name: str) -> list[tuple[float, float]]:
        """(time, percent of one core) between consecutive samples."""
        points: list[tuple[float, float]] = []
        for previous, current in zip(self.samples, self.samples[1:], strict=False):
            if name in previous.cpu_seconds and name in current.cpu_seconds:
                span = current.at - previous.at
                if span > 0:
                    used = current.cpu_seconds[name] - previous.cpu_seconds[name]
                    points.append((current.at, 100.0 * used / span))
        return points


class Stack:
    """Stops what a scenario started, last first, whatever happens."""

    def __init__(self) -> None:
        self._stoppers: list[Callable[[], None]] = []

    def push(self, item: T, stopper: Callable[[], None]) -> T:
        self._stoppers.append(stopper)
        return item

    def close(self) -> None:
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception as error:  # keep stopping the rest
                print(f"bench: cleanup failed: {error!r}", file=sys.stderr)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
