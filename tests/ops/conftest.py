"""Fixtures for the operating features: the CLI in-process (the system's fixtures, `sandbox`,
`control`, `settings_env` and `start_worker`, are tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import CliRun, in_process_cli
from tests.support.redis_server import RedisServer, evicting_redis_server


@pytest.fixture
def run_cli() -> CliRun:
    """`tango-resend ARGS...` in this process, with the environment the test set."""
    return in_process_cli()


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own that evicts under memory pressure."""
    server = evicting_redis_server(tmp_path / "redis").start()
    yield server
    server.stop()
