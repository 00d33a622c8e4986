"""Shared fixtures: a real Redis database of the tests' own, and clean settings per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from worker.core.settings import Settings, reset_settings_cache
from worker.runtime import reset_runtime

# The tests' own database number on the shared Redis; flushed by every test that uses it.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Variables a developer's shell or .env could set, which must not leak into a test.
_SETTING_NAMES = tuple(name.upper() for name in Settings.model_fields)


@pytest.fixture(autouse=True)
def clean_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Each test starts from defaults: no inherited variables, no .env, no cached runtime."""
    for name in _SETTING_NAMES:
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
