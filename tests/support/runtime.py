"""A worker's Runtime built in the test process, on the tests' Redis database."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tests.support.redis_db import TEST_REDIS_URL
from tests.support.settings import apply_settings
from worker.core.settings import load_settings
from worker.runtime import Runtime

# make_runtime(**settings): a tests/unit/conftest.py fixture; closed after the test.
RuntimeFactory = Callable[..., Runtime]


@contextlib.contextmanager
def open_runtime(setenv: Callable[[str, str], None], **settings: str) -> Iterator[Runtime]:
    """A Runtime from `settings` (set with `setenv`, e.g. `monkeypatch.setenv`) on the tests'
    Redis database unless REDIS_URL is given; its Redis connection closed at the end."""
    apply_settings({"REDIS_URL": TEST_REDIS_URL, **settings}, setenv)
    built = Runtime(load_settings())
    try:
        yield built
    finally:
        built.redis.close()
