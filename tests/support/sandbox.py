"""The bundled Tango sandbox as tests run it, and the settings that point tango-resend at it."""

from __future__ import annotations

from typing import Any

from tests.support.settings import new_tag
from worker.sandbox import SandboxServer

PLATFORM_NAME = "test-platform"
PLATFORM_KEY = "test-key-Zq8vN3xK"
# Short windows stand in for Tango's 30 seconds; the code only ever reads the setting.
WINDOW_SECONDS = 1.5
# Tests: calls and retries are quick, so faults play out in seconds; every state change logged.
QUICK_FAILURES = {
    "TANGO_TIMEOUT_SECONDS": "2",
    "TANGO_CONNECT_TIMEOUT_SECONDS": "1",
    "RESEND_BACKOFF_BASE_SECONDS": "0.2",
    "RESEND_BACKOFF_MAX_SECONDS": "1",
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": "4",
    "LOG_LEVEL": "INFO",
}


def start_sandbox(window_seconds: float = WINDOW_SECONDS, **options: Any) -> SandboxServer:
    """A sandbox on loopback that knows our platform credentials (stop it after use)."""
    return SandboxServer(
        cooldown_seconds=window_seconds,
        platform_name=PLATFORM_NAME,
        platform_key=PLATFORM_KEY,
        **options,
    ).start()


def resend_settings(
    *,
    redis_url: str,
    prefix: str,
    base_url: str,
    window_seconds: float,
    rate_limit: float = 0.0,
    platform: tuple[str, str] = (PLATFORM_NAME, PLATFORM_KEY),
    **extra: str,
) -> dict[str, str]:
    """Settings for a run: its own key prefix and queue (`prefix`), Tango at `base_url` with
    the `platform` credentials, a short window; `extra` adds or overrides any other."""
    settings = {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "RESEND_QUEUE": prefix,
        "TANGO_BASE_URL": base_url,
        "TANGO_PLATFORM_NAME": platform[0],
        "TANGO_PLATFORM_KEY": platform[1],
        "RESEND_COOLDOWN_SECONDS": f"{window_seconds:g}",
        # Off unless a test is about it: timing tests measure the window, not the limiter.
        "TANGO_RATE_LIMIT": f"{rate_limit:g}",
    }
    settings.update(extra)
    return settings


def sandbox_settings(
    redis_url: str, sandbox: SandboxServer, *, prefix: str = "test", **overrides: str
) -> dict[str, str]:
    """A test's settings (producer and workers alike): this sandbox, the short window, quick
    failures, a key prefix and queue of its own; `overrides` win."""
    return resend_settings(
        redis_url=redis_url,
        prefix=f"{prefix}-{new_tag()}",
        base_url=sandbox.base_url,
        window_seconds=WINDOW_SECONDS,
        **{**QUICK_FAILURES, **overrides},
    )
