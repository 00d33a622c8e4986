"""Fixtures for end-to-end tests: the sandbox over HTTP, real workers, short windows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from tests.integration.harness import WorkerProcess
from worker.core.settings import reset_settings_cache
from worker.runtime import reset_runtime
from worker.sandbox import SandboxControl, SandboxServer

pytestmark = pytest.mark.integration

# Short windows stand in for Tango's 30 seconds; the code only ever reads the setting.
WINDOW_SECONDS = 1.5
PLATFORM_NAME = "it-platform"
PLATFORM_KEY = "it-key-Zq8vN3xK"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(
        cooldown_seconds=WINDOW_SECONDS, platform_name=PLATFORM_NAME, platform_key=PLATFORM_KEY
    ).start()
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
    tag = uuid.uuid4().hex[:8]
    env = {
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": f"it-{tag}",
        "RESEND_QUEUE": f"it-{tag}",
        "TANGO_BASE_URL": sandbox.base_url,
        "TANGO_PLATFORM_NAME": PLATFORM_NAME,
        "TANGO_PLATFORM_KEY": PLATFORM_KEY,
        "RESEND_COOLDOWN_SECONDS": str(WINDOW_SECONDS),
        # Off unless a test is about it: timing tests measure the window, not the limiter.
        "TANGO_RATE_LIMIT": "0",
        "TANGO_TIMEOUT_SECONDS": "2",
        "TANGO_CONNECT_TIMEOUT_SECONDS": "1",
        "RESEND_BACKOFF_BASE_SECONDS": "0.2",
        "RESEND_BACKOFF_MAX_SECONDS": "1",
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": "4",
        "LOG_LEVEL": "INFO",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    reset_runtime()
    return env


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(settings_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start real worker processes with the test's settings; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(
        name: str = "w1", *, concurrency: int = 8, wait: bool = True, **overrides: str
    ) -> WorkerProcess:
        process = WorkerProcess(
            {**settings_env, **overrides},
            tmp_path / f"{name}.log",
            concurrency=concurrency,
            name=name,
        )
        started.append(process)
        return process.wait_ready() if wait else process

    yield start
    for process in started:
        process.stop()
