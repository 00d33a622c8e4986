"""Shared fixtures: a real Redis database of the tests' own, clean settings per test, and the
system as real processes (the sandbox as Tango, workers, the receiver) for the suites that run
it: tests/integration and tests/ops (`settings_env`, `start_worker`), tests/chaos and
tests/hostile (`configure`, `start_web`, and a `start_worker` of their own taking the settings).

Each fixture only wraps tests/support, where the helpers themselves live.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.broker import producer_broker
from tests.support.processes import StartedProcesses, WebFactory, WorkerFactory, WorkerProcess
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.redis_server import RedisServer
from tests.support.sandbox import sandbox_settings, start_sandbox
from tests.support.settings import SETTING_NAMES, Configure, apply_settings
from worker.core.settings import reset_settings_cache
from worker.runtime import reset_runtime
from worker.sandbox import SandboxControl, SandboxServer


@pytest.fixture(autouse=True)
def clean_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Each test starts from defaults: no inherited variables, no .env, no cached runtime."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # no developer's .env is read
    reset_settings_cache()
    reset_runtime()
    yield
    reset_runtime()
    reset_settings_cache()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A flushed test database. Without Redis the test is skipped locally, failed in CI."""
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}")
        pytest.skip(f"Redis is not reachable at {TEST_REDIS_URL}")
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def test_db(redis_client: redis.Redis) -> redis.Redis:
    """The tests' shared database, flushed (`redis_client`)."""
    return redis_client


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, the one a test may stop, restart or break."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


# --- the system as real processes -----------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = start_sandbox()
    yield server
    server.stop()


@pytest.fixture
def control(sandbox: SandboxServer) -> SandboxControl:
    return SandboxControl(sandbox.control_url)


@pytest.fixture
def settings_env(
    sandbox: SandboxServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Settings shared by this test process (the producer) and its workers."""
    env = sandbox_settings(TEST_REDIS_URL, sandbox, prefix="it")
    apply_settings(env, monkeypatch.setenv)
    return env


@pytest.fixture
def configure(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """configure(redis_url=..., **overrides) sets this process's settings and returns them;
    the Celery producer is pointed at that Redis for the rest of the test."""
    broker = contextlib.ExitStack()

    def apply(redis_url: str = TEST_REDIS_URL, **overrides: str) -> dict[str, str]:
        env = sandbox_settings(redis_url, sandbox, prefix="chaos", **overrides)
        apply_settings(env, monkeypatch.setenv)
        broker.close()
        broker.enter_context(producer_broker())
        return env

    with broker:
        yield apply
    reset_runtime()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[StartedProcesses]:
    """What the test started, stopped after it; logs in its tmp_path."""
    started = StartedProcesses(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def start_worker(settings_env: dict[str, str], processes: StartedProcesses) -> WorkerFactory:
    """start_worker(name="w1", *, concurrency=8, wait=True, **overrides): a real worker with
    the test's `settings_env` and `overrides`. (tests/chaos and tests/hostile have their own.)"""

    def start(
        name: str = "w1", *, concurrency: int = 8, wait: bool = True, **overrides: str
    ) -> WorkerProcess:
        env = {**settings_env, **overrides}
        return processes.worker(env, name, concurrency=concurrency, wait=wait)

    return start


@pytest.fixture
def start_web(processes: StartedProcesses) -> WebFactory:
    """start_web(env, name="web"): the receiver, a real process, ready."""
    return processes.web
