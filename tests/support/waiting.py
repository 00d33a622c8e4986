"""Waiting for a state: poll with a deadline, never sleep a fixed time and hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError, TimeoutError):
    """A wait ran past its deadline: a failed assertion in a test, a TimeoutError in bench."""


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy, and return that; raise `WaitTimedOut`
    after `timeout` seconds. An exception the probe raises ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout:g}s waiting for {what or probe}")
        time.sleep(interval)
