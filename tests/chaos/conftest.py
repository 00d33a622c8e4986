"""Fault tests: every test here is marked `chaos` (`-m "not chaos"` gives the fast subset).

The system's fixtures are tests/conftest.py's; `start_worker` here takes the settings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.findings import print_report
from tests.support.processes import StartedProcesses, WorkerFactory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chaos: fault injection with real processes (worker kills, Redis faults, Tango faults)",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_report("chaos", terminalreporter)


@pytest.fixture
def start_worker(processes: StartedProcesses) -> WorkerFactory:
    """start_worker(env, name="w1", *, concurrency=8, wait=True): a real worker process."""
    return processes.worker
