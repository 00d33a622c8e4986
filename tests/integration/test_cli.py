"""The command line as users call it: real processes, real Redis, the sandbox over HTTP."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import WorkerFactory, WorkerProcess, piped_python, run_python
from tests.support.records import finished
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.sandbox import SandboxControl
from worker.tango.timeparse import parse_tango_instant

pytestmark = pytest.mark.integration
ORDER = "RA251125-7001-01"


def test_enqueue_then_status_through_the_cli(
    control: SandboxControl, start_worker: WorkerFactory, settings_env: dict[str, str]
) -> None:
    control.add_order(ORDER)
    start_worker()
    enqueued = run_python(
        ["-m", "worker", "enqueue", ORDER, "--etid", "E000123", "--key", "k-1"], settings_env
    )
    assert enqueued.returncode == 0, enqueued.stderr
    request_id = enqueued.stdout.strip()
    again = run_python(
        ["-m", "worker", "enqueue", ORDER, "--etid", "E000123", "--key", "k-1"], settings_env
    )
    assert again.stdout.strip() == f"{request_id} idempotent"

    wait_for(lambda: finished([request_id]), timeout=10, what="sent")
    shown = run_python(["-m", "worker", "status", request_id, "--json"], settings_env)
    assert shown.returncode == 0
    record = json.loads(shown.stdout)
    assert record["status"] == "sent" and record["request"] == {"newEtid": "E000123"}
    table = run_python(["-m", "worker", "status", request_id], settings_env)
    assert re.search(r"status\s+sent", table.stdout)


def test_status_of_an_unknown_request_exits_1(settings_env: dict[str, str]) -> None:
    result = run_python(["-m", "worker", "status", "no-such-request"], settings_env)
    assert result.returncode == 1
    assert "no request" in result.stderr


def test_plain_celery_cli_with_prefork_pool_runs_resends(
    control: SandboxControl, settings_env: dict[str, str], tmp_path: Path
) -> None:
    """`celery -A worker worker` works as well as our own command, prefork pool included."""
    control.add_order(ORDER)
    worker = WorkerProcess(
        settings_env,
        tmp_path / "celery.log",
        command=[
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            f"--queues={settings_env['RESEND_QUEUE']}",
            "--loglevel=INFO",
        ],
    )
    try:
        worker.wait_ready()
        ids = [enqueue_resend(ORDER, new_etid=f"E00000{n}") for n in (1, 2)]
        records = wait_for(lambda: finished(ids), timeout=15, what="both sent")
    finally:
        worker.stop()
    assert [r.status.value for r in records] == ["sent", "sent"]
    assert [c["status"] for c in control.calls()] == [201, 201]


def test_sandbox_command_serves_until_terminated(tmp_path: Path) -> None:
    sandbox_command = [
        "-m",
        "worker",
        "sandbox",
        "--port",
        "0",
        "--cooldown",
        "2",
        "--order",
        ORDER,
        "--platform-key",
        "cli-key",
        "--rate-limit",
        "100",
        "--last-sent-format",
        "java",
        "--clock-offset",
        "3",
    ]
    with piped_python(sandbox_command) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = re.search(r"listening on (\S+)", line)
        assert base_url, line
        response = requests.post(
            f"{base_url.group(1)}/orders/{ORDER}/resends",
            json={},
            auth=("sandbox-platform", "cli-key"),
            timeout=5,
        )
        assert response.status_code == 201
        again = requests.post(
            f"{base_url.group(1)}/orders/{ORDER}/resends",
            json={},
            auth=("sandbox-platform", "cli-key"),
            timeout=5,
        )
        assert again.status_code == 403 and again.json()["i18nKey"] == "403.005"
        # The options reached the server: Java-style dates, a clock 3 s ahead.
        assert re.search(r"Last sent at \w{3} \w{3} \d+ [\d:]+ UTC \d{4}", again.json()["message"])
        tango_now = parse_tango_instant(again.json()["timestamp"])
        assert tango_now is not None and tango_now.at.timestamp() - time.time() > 2
    assert process.returncode == 0


def test_web_refuses_to_start_without_a_secret(settings_env: dict[str, str]) -> None:
    result = run_python(["-m", "worker", "web", "--port", "0"], settings_env)
    assert result.returncode == 2
    assert "WEBHOOK_SECRET" in result.stderr and "Traceback" not in result.stderr


def test_cancel_command(control: SandboxControl, settings_env: dict[str, str]) -> None:
    """No worker runs, so the request stays queued until the CLI cancels it."""
    control.add_order(ORDER)
    request_id = enqueue_resend(ORDER)
    cancelled = run_python(["-m", "worker", "cancel", request_id, "--json"], settings_env)
    assert cancelled.returncode == 0
    assert json.loads(cancelled.stdout) == {"id": request_id, "result": "cancelled", "callers": 1}
    again = run_python(["-m", "worker", "cancel", request_id], settings_env)
    assert again.returncode == 0, "cancelling is idempotent"
    unknown = run_python(["-m", "worker", "cancel", "nope"], settings_env)
    assert unknown.returncode == 1


def test_cancel_of_a_sent_request_is_refused(
    control: SandboxControl, start_worker: WorkerFactory, settings_env: dict[str, str]
) -> None:
    control.add_order(ORDER)
    start_worker()
    request_id = enqueue_resend(ORDER)
    wait_for(lambda: finished([request_id]), timeout=10, what="sent")
    result = run_python(["-m", "worker", "cancel", request_id], settings_env)
    assert result.returncode == 2 and "already sent" in result.stderr
