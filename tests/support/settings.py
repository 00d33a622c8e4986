"""tango-resend's settings as a test or a bench run gives them to itself and its processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from worker.core.settings import Settings, reset_settings_cache
from worker.runtime import reset_runtime

# Every variable tango-resend reads: a child process gets only the ones it is given.
SETTING_NAMES = tuple(name.upper() for name in Settings.model_fields)


def new_tag() -> str:
    """A short random tag: a run's own key prefix, queue, worker names and log files."""
    return uuid.uuid4().hex[:8]


def apply_settings(settings: Mapping[str, str], setenv: Callable[[str, str], None]) -> None:
    """Make this process (the producer) use `settings`, as a worker started with them would.

    `setenv` sets one variable: a test passes `monkeypatch.setenv` (undone after the test).
    Cached settings and the runtime built from them are dropped."""
    for name, value in settings.items():
        setenv(name, value)
    reset_settings_cache()
    reset_runtime()


# configure(redis_url=..., **overrides): tests/conftest.py fixture; returns the settings it set.
Configure = Callable[..., dict[str, str]]
