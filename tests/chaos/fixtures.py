"""Fixtures shared by tests/chaos and tests/hostile: the sandbox, real workers and receivers.

Tests that break Redis run their own redis-server; the others use the tests' database
(TEST_REDIS_URL) under a key prefix and queue of their own. Both conftests import these.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.chaos.system import RedisServer, producer_broker
from tests.conftest import TEST_REDIS_URL
from tests.integration.harness import WebProcess, WorkerProcess
from worker.core.settings import reset_settings_cache
from worker.runtime import reset_runtime
from worker.sandbox import SandboxControl, SandboxServer

PLATFORM_NAME = "chaos-platform"
PLATFORM_KEY = "chaos-key-Hq2sW9"
# Findings printed at the end of the run (duplicates after kills, and the like): (suite, line).
REPORT: list[tuple[str, str]] = []


def chaos_seed() -> int:
    """CHAOS_SEED=n replays a run; otherwise a fresh seed, printed in the findings."""
    return int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30))


def report(suite: str, line: str) -> None:
    REPORT.append((suite, line))
    print(line)


def print_report(suite: str, terminalreporter: Any) -> None:
    lines = [line for name, line in REPORT if name == suite]
    if lines:
        terminalreporter.section(f"{suite} findings")
        for line in lines:
            terminalreporter.write_line(line)


def base_settings(redis_url: str, sandbox: SandboxServer, **overrides: str) -> dict[str, str]:
    """Settings for the producer (this process) and its workers: short windows and timeouts."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"chaos-{tag}",
        "RESEND_QUEUE": f"chaos-{tag}",
        "TANGO_BASE_URL": sandbox.base_url,
        "TANGO_PLATFORM_NAME": PLATFORM_NAME,
        "TANGO_PLATFORM_KEY": PLATFORM_KEY,
        "RESEND_COOLDOWN_SECONDS": "1.5",
        "TANGO_RATE_LIMIT": "0",
        "TANGO_TIMEOUT_SECONDS": "2",
        "TANGO_CONNECT_TIMEOUT_SECONDS": "1",
        "RESEND_BACKOFF_BASE_SECONDS": "0.2",
        "RESEND_BACKOFF_MAX_SECONDS": "1",
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": "4",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


def apply_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    reset_runtime()


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(
        cooldown_seconds=1.5, platform_name=PLATFORM_NAME, platform_key=PLATFORM_KEY
    ).start()
    yield server
    server.stop()


@pytest.fixture
def control(sandbox: SandboxServer) -> SandboxControl:
    return SandboxControl(sandbox.control_url)


Configure = Callable[..., dict[str, str]]


@pytest.fixture
def configure(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """configure(redis_url=..., **overrides) sets this process's settings and returns them;
    the Celery producer is pointed at that Redis for the rest of the test."""
    stack: list[Any] = []

    def apply(redis_url: str = TEST_REDIS_URL, **overrides: str) -> dict[str, str]:
        env = base_settings(redis_url, sandbox, **overrides)
        apply_settings(monkeypatch, env)
        while stack:
            stack.pop().__exit__(None, None, None)
        context = producer_broker()
        context.__enter__()
        stack.append(context)
        return env

    yield apply
    while stack:
        stack.pop().__exit__(None, None, None)
    reset_runtime()


@pytest.fixture
def test_db(redis_client: redis.Redis) -> redis.Redis:
    """The tests' shared database, flushed (tests/conftest.py)."""
    return redis_client


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """start_worker(env, name=..., concurrency=..., wait=True): a real worker process."""
    started: list[WorkerProcess] = []

    def start(
        env: dict[str, str], name: str = "w1", *, concurrency: int = 8, wait: bool = True
    ) -> WorkerProcess:
        process = WorkerProcess(env, tmp_path / f"{name}.log", concurrency=concurrency, name=name)
        started.append(process)
        return process.wait_ready(timeout=60) if wait else process

    yield start
    for process in started:
        process.stop()


WebFactory = Callable[..., WebProcess]


@pytest.fixture
def start_web(tmp_path: Path) -> Iterator[WebFactory]:
    started: list[WebProcess] = []

    def start(env: dict[str, str], name: str = "web") -> WebProcess:
        process = WebProcess(env, tmp_path / f"{name}.log")
        started.append(process)
        return process.wait_ready(timeout=60)

    yield start
    for process in started:
        process.stop()
