"""Unit-test fixtures on the tests' Redis: a Runtime of chosen settings (the executor tests'
by default), and the record store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis

from tests.support.record_store import record_store
from tests.support.runtime import RuntimeFactory, open_runtime
from tests.support.scripted_tango import EXECUTOR_SETTINGS
from worker.runtime import Runtime
from worker.state.records import RecordStore


@pytest.fixture
def make_runtime(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RuntimeFactory]:
    """make_runtime(**settings): a Runtime on the flushed test database, closed afterwards."""
    with contextlib.ExitStack() as opened:

        def make(**settings: str) -> Runtime:
            return opened.enter_context(open_runtime(monkeypatch.setenv, **settings))

        yield make


@pytest.fixture
def runtime(make_runtime: RuntimeFactory) -> Runtime:
    """The executor tests' Runtime (EXECUTOR_SETTINGS); a module whose tests need other
    settings defines a `runtime` of its own."""
    return make_runtime(**EXECUTOR_SETTINGS)


@pytest.fixture
def store(redis_client: redis.Redis) -> RecordStore:
    """The record store on the flushed test database (tests/support/record_store.py)."""
    return record_store(redis_client)
