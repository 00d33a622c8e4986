"""The resend policy the decision tests judge by: Tango's 30 s window and production-like
budgets, and the same with probing on (issue 16)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from worker.resend.decision import ResendPolicy

POLICY = ResendPolicy(
    window_seconds=30.0,
    max_retries=5,
    backoff_base_seconds=1.0,
    backoff_max_seconds=60.0,
    defer_jitter_seconds=0.05,
    max_cooldown_deferrals=10,
)
# Probing on, without jitter: a probe 3 s after an ambiguous call, whose send can take 13.05 s.
PROBING_POLICY = dataclasses.replace(
    POLICY, defer_jitter_seconds=0.0, probe_delay_seconds=3.0, longest_send_seconds=13.05
)


def fixed(value: float) -> Callable[[], float]:
    """A pinned source of randomness."""
    return lambda: value
