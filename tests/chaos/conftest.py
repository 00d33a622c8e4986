"""Fault tests: every test here is marked `chaos` (`-m "not chaos"` gives the fast subset)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.fixtures import (
    configure,
    control,
    own_redis,
    print_report,
    sandbox,
    start_web,
    start_worker,
    test_db,
)

__all__ = ["configure", "control", "own_redis", "sandbox", "start_web", "start_worker", "test_db"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chaos: fault injection with real processes (worker kills, Redis faults, Tango faults)",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_report("chaos", terminalreporter)
