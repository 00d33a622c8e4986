"""Workers killed mid-batch, clocks that disagree, settings that are wrong, logs kept clean."""

from __future__ import annotations

import base64
from itertools import pairwise

import pytest

from tests.support.calls import LATENESS_ALLOWED, resend_calls
from tests.support.processes import WorkerFactory, run_python
from tests.support.records import finished
from tests.support.sandbox import PLATFORM_KEY, PLATFORM_NAME, WINDOW_SECONDS
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.sandbox import SandboxControl, SandboxServer

pytestmark = pytest.mark.integration


def test_worker_sigkilled_mid_batch_loses_nothing(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given calls in flight and deferrals held in a worker's memory, SIGKILL loses none."""
    orders = [f"RA251125-3001-{n:02d}" for n in range(8)]
    for order in orders:
        control.add_order(order)
    for order in orders[:3]:  # these calls are in flight, Tango having resent, at the kill
        control.inject_fault(order, delay_seconds=1.0, delay_phase="after")
    doomed = start_worker("doomed", concurrency=8)
    ids = [enqueue_resend(order, new_etid=f"E00000{n}") for order in orders for n in (1, 2)]

    wait_for(
        lambda: sum(c["status"] == 201 for c in control.calls()) >= 3,
        timeout=10,
        what="the batch to be under way",
    )
    doomed.kill()
    start_worker("rescuer", concurrency=8)

    records = wait_for(lambda: finished(ids), timeout=40, what="every request to finish")
    assert {r.status.value for r in records} == {"sent"}
    for order in orders:
        calls = resend_calls(control, order)
        assert all(c["i18nKey"] != "403.005" for c in calls), "no call inside a window"
        sends = [c for c in calls if c["status"] == 201]
        for previous, current in pairwise(sends):
            assert current["received_at"] - previous["answered_at"] >= WINDOW_SECONDS


def test_cooldown_is_judged_on_tangos_clock(
    start_worker: WorkerFactory, settings_env: dict[str, str]
) -> None:
    """Given Tango's clock five minutes ahead and a Java-style date, the wait is still exact."""
    order = "RA251125-4001-01"
    with SandboxServer(
        cooldown_seconds=WINDOW_SECONDS,
        platform_name=PLATFORM_NAME,
        platform_key=PLATFORM_KEY,
        clock_offset_seconds=300.0,
        last_sent_format="iso",
    ) as skewed:
        control = SandboxControl(skewed.control_url)
        control.add_order(order)
        start_worker(TANGO_BASE_URL=skewed.base_url)
        control.portal_resend(order)
        request_id = enqueue_resend(order)
        (record,) = wait_for(lambda: finished([request_id]), timeout=10, what="sent")

        calls = resend_calls(control, order)
    assert record.status.value == "sent"
    assert [c["status"] for c in calls] == [403, 201]
    waited = calls[1]["received_at"] - calls[0]["received_at"]
    assert waited <= WINDOW_SECONDS + LATENESS_ALLOWED


def test_logs_hold_no_secret_and_no_recipient_contact(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    order = "RA251125-5001-01"
    email, mobile = "zed.distinctive-recipient@example.net", "+14155550987"
    control.add_order(order, email=email)
    control.inject_fault(order, status=503)
    worker = start_worker()
    ids = [
        enqueue_resend(order, new_email=email),
        enqueue_resend(order, new_mobile=mobile, new_delivery_method="PHONE"),
        enqueue_resend("RA251125-5999-99", new_email=email),
    ]
    wait_for(lambda: finished(ids), timeout=15, what="all requests to finish")

    log = worker.log()
    basic = base64.b64encode(f"{PLATFORM_NAME}:{PLATFORM_KEY}".encode()).decode()
    assert ids[0] in log, "the log is the worker's real log"
    for secret in (PLATFORM_KEY, basic, email, mobile, "zed.distinctive"):
        assert secret not in log


@pytest.mark.parametrize(
    "variable, value",
    [
        ("REDIS_URL", "definitely not a url"),
        ("RESEND_MAX_RETRIES", "-3"),
        ("RESEND_COOLDOWN_SECONDS", "soon"),
    ],
)
def test_bad_setting_stops_the_worker_at_start_naming_it(
    settings_env: dict[str, str], variable: str, value: str
) -> None:
    result = run_python(["-m", "worker", "worker"], {**settings_env, variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_celery_cli_without_credentials_stops_at_start(settings_env: dict[str, str]) -> None:
    env = {**settings_env, "TANGO_PLATFORM_NAME": "", "TANGO_PLATFORM_KEY": ""}
    result = run_python(["-m", "celery", "-A", "worker", "worker", "--pool=solo"], env)
    assert result.returncode != 0
    assert "TANGO_PLATFORM_NAME" in result.stderr


def test_enqueue_cli_refuses_bad_input_with_exit_2(
    control: SandboxControl, settings_env: dict[str, str]
) -> None:
    result = run_python(
        ["-m", "worker", "enqueue", "RA251125-2001-01", "--email", "nope"], settings_env
    )
    assert result.returncode == 2
    assert "newEmail" in result.stderr
    assert control.calls() == []
