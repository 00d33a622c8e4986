"""Hostile input and secrets: the corpus, property tests, and a scan of the whole system.

The system's fixtures are tests/conftest.py's; `start_worker` here takes the settings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.findings import print_report
from tests.support.processes import StartedProcesses, WorkerFactory


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_report("hostile", terminalreporter)


@pytest.fixture
def start_worker(processes: StartedProcesses) -> WorkerFactory:
    """start_worker(env, name="w1", *, concurrency=8, wait=True): a real worker process."""
    return processes.worker
