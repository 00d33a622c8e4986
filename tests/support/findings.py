"""Findings of the fault and hostile-input suites (duplicates after kills, and the like): each
printed where it happens and again at the end of the run; and the seed that replays a run."""

from __future__ import annotations

import os
import random
from typing import Any

# (suite, line), in the order they were reported.
REPORT: list[tuple[str, str]] = []


def chaos_seed() -> int:
    """CHAOS_SEED=n replays a run; otherwise a fresh seed, printed in the findings."""
    return int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30))


def report(suite: str, line: str) -> None:
    REPORT.append((suite, line))
    print(line)


def print_report(suite: str, terminalreporter: Any) -> None:
    """The suite's findings as a section of pytest's terminal summary."""
    lines = [line for name, line in REPORT if name == suite]
    if lines:
        terminalreporter.section(f"{suite} findings")
        for line in lines:
            terminalreporter.write_line(line)
