"""Bad days at Tango, end to end: a real worker, the bundled sandbox, real Redis.

- Our credentials refused (a wrong TANGO_PLATFORM_KEY): one ERROR naming the setting,
  `status` says the request waits on refused credentials, the fleet tests Tango once per
  interval instead of every request calling, and after the key is fixed and the worker
  restarted every request goes.
- Tango unreachable (the sandbox stopped, then started again on its port): requests wait,
  none fails, and every one is sent once Tango is back, without a burst past the rate limit.
"""

from __future__ import annotations

import time

import pytest

from tests.support.metrics import labelled, samples, scrape
from tests.support.processes import StartedProcesses, free_port, run_python
from tests.support.records import finished
from tests.support.sandbox import PLATFORM_KEY, PLATFORM_NAME, WINDOW_SECONDS
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend
from worker.sandbox import SandboxControl, SandboxServer
from worker.state.records import ResendStatus

pytestmark = pytest.mark.integration

# Short outage settings: backoff capped at 1 s, patience two minutes.
OUTAGE = {"TANGO_OUTAGE_RETRY_MAX_SECONDS": "1", "TANGO_OUTAGE_PATIENCE_SECONDS": "120"}


def statuses(ids: list[str]) -> list[tuple[str, str]]:
    """(status, reason) of each request."""
    records = [get_resend(request_id) for request_id in ids]
    return [(r.status.value, r.reason or "") for r in records if r is not None]


def all_waiting_on(ids: list[str], words: str) -> bool:
    found = statuses(ids)
    return len(found) == len(ids) and all(
        status == "waiting" and reason.startswith(f"waiting: {words} since ")
        for status, reason in found
    )


def test_a_wrong_platform_key_waits_loudly_and_every_request_goes_once_it_is_fixed(
    settings_env: dict[str, str],
    control: SandboxControl,
    processes: StartedProcesses,
) -> None:
    orders = [f"RA251206-2401-0{n}" for n in range(1, 4)]
    for order in orders:
        control.add_order(order)
    port = free_port()
    wrong = {
        **settings_env,
        **OUTAGE,
        "TANGO_PLATFORM_KEY": "wrong-key-123",
        "METRICS_PORT": str(port),
    }
    worker = processes.worker(wrong, "w-wrong-key")
    ids = [enqueue_resend(order) for order in orders]

    worker.wait_until(
        lambda: all_waiting_on(ids, "credentials refused"),
        timeout=30,
        what="every request waiting on refused credentials",
    )

    # Loud where it matters: one ERROR naming the setting to check, not one per request.
    errors = [line for line in worker.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    assert "Tango refuses our credentials" in errors[0]
    assert "TANGO_PLATFORM_KEY" in errors[0]
    assert "wrong-key-123" not in worker.log()
    # `status` names the waiting state and its reason.
    shown = run_python(["-m", "worker", "status", ids[0]], wrong)
    assert shown.returncode == 0, shown.stderr
    assert "waiting" in shown.stdout and "credentials refused since" in shown.stdout
    # The alert's series: Tango down for refused credentials, three requests waiting.
    text = scrape(f"http://127.0.0.1:{port}/metrics")
    assert text is not None
    values, _ = samples(text)
    assert labelled(values, "tango_resend_tango_outage", "reason")["credentials_refused"] == 1
    assert labelled(values, "tango_resend_waiting_on_outage", "reason")["credentials_refused"] == 3
    assert values[("tango_resend_tango_up", ())] == 0
    # The fleet tests Tango once per interval (0.5 to 1 s here): at most 9 calls in 4 s,
    # where three requests each calling on their own backoff would make 12 or more.
    before = len(control.calls())
    time.sleep(4.0)
    assert len(control.calls()) - before <= 9
    assert all(status == "waiting" for status, _ in statuses(ids))
    worker.stop()

    fixed = {**wrong, "TANGO_PLATFORM_KEY": PLATFORM_KEY}
    processes.worker(fixed, "w-right-key")

    wait_for(lambda: finished(ids), timeout=30, what="every request sent")
    assert [status for status, _ in statuses(ids)] == ["sent"] * 3
    created = [c for c in control.calls() if c["status"] == 201]
    assert sorted(c["referenceOrderID"] for c in created) == orders


def restart_on(port: int, orders: list[str], rate_limit: float) -> SandboxServer:
    """A new sandbox on `port` that knows `orders` before it serves its first call."""
    server = SandboxServer(
        port=port,
        cooldown_seconds=WINDOW_SECONDS,
        platform_name=PLATFORM_NAME,
        platform_key=PLATFORM_KEY,
        rate_limit=rate_limit,
    )
    for order in orders:
        server.state.add_order(order)
    return server.start()


def test_tango_unreachable_delays_requests_and_fails_none(
    sandbox: SandboxServer,
    settings_env: dict[str, str],
    processes: StartedProcesses,
) -> None:
    """Given Tango unreachable for 15 s (with a 1 s backoff cap, the old worker failed
    every request within seconds); Then the requests wait, and go once it is back, at the
    fleet's rate (Tango's own limiter refuses none)."""
    orders = [f"RA251206-2402-0{n}" for n in range(1, 5)]
    rate = 2.0
    env = {**settings_env, **OUTAGE, "TANGO_RATE_LIMIT": f"{rate:g}"}
    worker = processes.worker(env, "w-outage")
    sandbox.stop()
    down_at = time.monotonic()
    ids = [enqueue_resend(order) for order in orders]

    worker.wait_until(
        lambda: all_waiting_on(ids, "Tango unreachable"),
        timeout=30,
        what="every request waiting on Tango unreachable",
    )
    time.sleep(max(0.0, 15.0 - (time.monotonic() - down_at)))
    assert all(status == "waiting" for status, _ in statuses(ids)), statuses(ids)
    lines = [line for line in worker.log().splitlines() if "Tango is unreachable" in line]
    assert 1 <= len(lines) <= 2, lines  # once, and at most once more a minute

    back = restart_on(sandbox.port, orders, rate)
    try:
        wait_for(lambda: finished(ids), timeout=30, what="every request sent after the outage")
        assert [status for status, _ in statuses(ids)] == ["sent"] * 4
        with SandboxControl(back.control_url) as control:
            assert control.stats()["rate_limited"] == 0, "no burst past the rate limit"
            created = [c["referenceOrderID"] for c in control.calls() if c["status"] == 201]
        assert sorted(created) == orders
        assert "Tango answers again" in worker.log()
        record = get_resend(ids[0])
        assert record is not None and record.status is ResendStatus.SENT
    finally:
        back.stop()
