"""A signed webhook from a plain HTTP client, through `tango-resend web`, to one resend."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest
import requests

from tests.support.calls import resend_calls
from tests.support.processes import StartedProcesses, WebProcess, WorkerFactory, child_env
from tests.support.readme import readme_block
from tests.support.receiver import WEBHOOK_SECRET, post_webhook
from tests.support.records import finished
from tests.support.waiting import wait_for
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration
ORDER = "RA251125-1201-01"
API_TOKEN = "e2e-token-Hc72Lp0Q-at-least-32-characters"


@pytest.fixture
def web_url(settings_env: dict[str, str], processes: StartedProcesses) -> str:
    env = {**settings_env, "WEBHOOK_SECRET": WEBHOOK_SECRET, "API_TOKEN": API_TOKEN}
    return processes.web(env).url


def test_signed_webhook_reaches_tango_exactly_once(
    web_url: str, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    control.add_order(ORDER)
    start_worker()

    first = post_webhook(
        web_url, WEBHOOK_SECRET, {"referenceOrderID": ORDER, "newEtid": "E000777"}, "msg_1"
    )
    again = post_webhook(
        web_url, WEBHOOK_SECRET, {"referenceOrderID": ORDER, "newEtid": "E000777"}, "msg_1"
    )
    unsigned = requests.post(
        f"{web_url}/webhooks/resends", json={"referenceOrderID": ORDER}, timeout=5
    )

    assert first.status_code == again.status_code == 202
    assert unsigned.status_code == 401
    request_id = first.json()["id"]
    assert again.json()["id"] == request_id
    wait_for(lambda: finished([request_id]), timeout=10, what="sent")
    calls = resend_calls(control, ORDER)
    assert [(c["status"], c["body"]) for c in calls] == [(201, {"newEtid": "E000777"})]

    shown = requests.get(
        f"{web_url}/resends/{request_id}",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=5,
    )
    assert shown.status_code == 200 and shown.json()["status"] == "sent"


def readme_example() -> str:
    return readme_block("<!-- webhook-example:start -->", "<!-- webhook-example:end -->", "sh")


def test_the_readme_curl_example_is_accepted_and_resent(
    web_url: str, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    control.add_order("RA251125-1001-01")
    start_worker()
    result = subprocess.run(
        ["bash", "-c", readme_example()],
        env=child_env({"URL": web_url, "WEBHOOK_SECRET": WEBHOOK_SECRET}),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer = json.loads(result.stdout)
    assert answer["status"] == "queued"
    wait_for(lambda: finished([answer["id"]]), timeout=10, what="sent")
    assert [c["status"] for c in resend_calls(control, "RA251125-1001-01")] == [201]


def test_two_receiver_processes_share_the_port_and_every_webhook_is_sent(
    settings_env: dict[str, str],
    tmp_path: Path,
    control: SandboxControl,
    start_worker: WorkerFactory,
) -> None:
    """`tango-resend web --workers 2` (how the receiver scales on one host, docs/operations.md):
    both processes serve one port, and every accepted webhook is resent once. Without
    `--access-log` the only line per webhook is the one naming its request."""
    env = {**settings_env, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    web = WebProcess(env, tmp_path / "web2.log", extra_arguments=["--workers", "2"])
    orders = [f"RA251125-1202-{n:02d}" for n in range(12)]
    for order in orders:
        control.add_order(order)
    try:
        web.wait_ready(timeout=30)
        start_worker()
        answers = [
            post_webhook(web.url, WEBHOOK_SECRET, {"referenceOrderID": order}, f"msg_two_{order}")
            for order in orders
        ]
        assert [answer.status_code for answer in answers] == [202] * len(orders)
        ids = [answer.json()["id"] for answer in answers]
        wait_for(lambda: finished(ids), timeout=20, what="all sent")
        assert len([c for c in control.calls() if c["status"] == 201]) == len(orders)
        log = web.log()
        assert "Started parent process" in log and log.count("Started server process") == 2
        assert "POST /webhooks/resends" not in log, "no access log unless asked for"
        assert log.count("status=queued from webhook msg_two_") == len(orders)

        # A receiver process that dies is replaced, and the port keeps answering.
        receivers = [
            child
            for child in psutil.Process(web.process.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        ]
        assert len(receivers) == 2
        receivers[0].kill()
        wait_for(
            lambda: web.log().count("Started server process") == 3,
            timeout=20,
            what="a replacement process",
        )
        late = post_webhook(
            web.url, WEBHOOK_SECRET, {"referenceOrderID": orders[0]}, "msg_two_after_a_death"
        )
        assert late.status_code == 202
    finally:
        web.stop()
