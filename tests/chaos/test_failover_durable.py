"""A Sentinel failover under load with REDIS_WAIT_REPLICAS=1: the primary is SIGKILLed while
webhooks and bulk enqueues arrive and the worker has calls in flight. After the promotion,
every request that got a 202 or an id ends `sent`, resent once, no two resends of an order
inside a window, and calls resume within 10 s of the promotion.

The run itself is tests/support/failover_run.py (the bench's `failover_*` figures run it too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.failover_run import FAILOVER_WEBHOOK_SECRET, FailoverLoad, run_failover
from tests.support.findings import report
from tests.support.processes import StartedProcesses
from tests.support.redis_topology import SentinelTopology
from tests.support.settings import Configure
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.chaos

WINDOW = 1.5
RESUME_GOAL_SECONDS = 10.0


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[SentinelTopology]:
    with SentinelTopology(tmp_path / "ha") as topology:
        yield topology


def test_a_failover_under_load_loses_nothing_promised_and_resends_nothing_twice(
    ha: SentinelTopology,
    control: SandboxControl,
    configure: Configure,
    processes: StartedProcesses,
) -> None:
    control.configure(cooldown_seconds=WINDOW)
    env = configure(
        redis_url=ha.url(0),
        REDIS_SENTINEL_MASTER=ha.master_name,
        REDIS_WAIT_REPLICAS="1",
        REDIS_WAIT_TIMEOUT_MS="500",
        WEBHOOK_SECRET=FAILOVER_WEBHOOK_SECRET,
        RESEND_COOLDOWN_SECONDS=f"{WINDOW:g}",
        TANGO_TIMEOUT_SECONDS="3",
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    figures = run_failover(ha, env, control, processes, FailoverLoad())
    report(
        "chaos",
        f"failover, REDIS_WAIT_REPLICAS=1: promised={figures.promised} lost="
        f"{len(figures.lost)} duplicates={figures.duplicates} inside a window="
        f"{len(figures.inside_window)} resume={figures.resume_s:.1f}s (promoted "
        f"{figures.promoted_after_s:.1f}s after the kill; {figures.calls_in_flight_at_kill} "
        f"calls in flight; webhooks refused at most {figures.longest_refusal_s:.1f}s; "
        f"answers {figures.answers})",
    )
    assert figures.calls_in_flight_at_kill > 0
    assert figures.lost == []
    assert figures.duplicates == 0
    assert figures.inside_window == []
    assert figures.resume_s <= RESUME_GOAL_SECONDS
