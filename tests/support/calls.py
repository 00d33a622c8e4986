"""What Tango saw: the sandbox's call log, read as resends, windows, duplicates and FIFO."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
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


def etid_of(call: Call) -> str:
    """The `newEtid` a call asked for: what tells one test request from another."""
    return str((call["body"] or {}).get("newEtid", ""))


def first_sends(calls: Iterable[Call]) -> list[str]:
    """Each request (by its etid) once, in the order Tango first acted on it: per-order FIFO."""
    return list(dict.fromkeys(etid_of(call) for call in accepted_sends(calls)))


def in_flight_at(call: Call, moments: Iterable[float], slack: float) -> bool:
    """The call had reached Tango and its outcome could not yet be recorded (up to `slack`
    seconds after Tango answered) at one of `moments` (a kill, a fault)."""
    answered = call["answered_at"] if call["answered_at"] is not None else float("inf")
    return any(call["received_at"] <= moment <= answered + slack for moment in moments)


def duplicate_sends(
    expected: Mapping[str, tuple[str, str]],
    calls: Iterable[Call],
    moments: list[float],
    slack: float,
) -> tuple[int, list[tuple[str, str, float]]]:
    """Resends beyond the first of each expected request (request id -> (order, etid)), and
    those of them no fault explains: not in flight at any of `moments`. Every expected
    request must have been resent at least once."""
    sends: dict[str, list[Call]] = defaultdict(list)
    for call in accepted_sends(calls):
        sends[etid_of(call)].append(call)
    duplicates, unexplained = 0, []
    for order, etid in expected.values():
        assert sends[etid], f"{order} {etid}: Tango never resent it"
        for extra in sends[etid][:-1]:
            duplicates += 1
            if not in_flight_at(extra, moments, slack):
                unexplained.append((order, etid, extra["received_at"]))
    return duplicates, unexplained
