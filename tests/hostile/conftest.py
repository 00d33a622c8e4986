"""Hostile input and secrets: the corpus, property tests, and a scan of the whole system."""

from __future__ import annotations

from typing import Any

from tests.chaos.fixtures import (
    configure,
    control,
    print_report,
    sandbox,
    start_web,
    start_worker,
    test_db,
)

__all__ = ["configure", "control", "sandbox", "start_web", "start_worker", "test_db"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_report("hostile", terminalreporter)
