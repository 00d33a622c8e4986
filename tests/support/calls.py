"""What Tango saw: the sandbox's call log, read as resends and windows."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from worker.sandbox import SandboxControl

Call = dict[str, Any]
# How late a resend may go out after its window opened (timer, jitter, one HTTP call).
LATENESS_ALLOWED = 0.5


def resend_calls(control: SandboxControl, order: str | None = None) -> list[Call]:
    """The sandbox's resend calls (of one order), in arrival order."""
    calls = [c for c in control.calls() if c["path"].endswith("/resends")]
    if order is not None:
        calls = [c for c in calls if c["referenceOrderID"] == order]
    return sorted(calls, key=lambda c: c["received_at"])


def accepted_sends(calls: Iterable[Call]) -> list[Call]:
    """Calls Tango acted on: a 201, or a reset/stall after processing (status logged)."""
    return [c for c in calls if c["status"] is not None and 200 <= c["status"] < 300]


def windows_respected(calls: list[Call], window: float) -> list[str]:
    """Problems with one order's calls: a cooldown refusal of our making, or two resends
    inside a window. A probe (the prompt second call after an ambiguous one, marked
    `X-Tango-Resend-Probe`) is meant to meet Tango's cooldown: that answer is its proof."""
    problems = [
        f"cooldown refusal at {c['received_at']:.3f}"
        for c in calls
        if c["i18nKey"] == "403.005" and not c.get("probe")
    ]
    sends = accepted_sends(calls)
    for previous, current in itertools.pairwise(sends):
        gap = current["received_at"] - previous["received_at"]
        if gap < window:
            problems.append(f"two resends {gap:.3f}s apart (window {window}s)")
    return problems
