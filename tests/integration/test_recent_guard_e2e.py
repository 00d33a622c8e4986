"""The recent-resend guard end to end: a real worker calls the sandbox, and what Tango saw is
read from its call log. Each scenario is one a new user met: with the guard off each sent two
resends; with RESEND_RECENT_SECONDS set, Tango sees one, and the second ask names the first.

- a console double submit (submit, Back, submit);
- two bounce events (webhooks) for one order with different event ids;
- `retry --all-failed` of a request that failed after another request of the order was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.calls import accepted_sends, resend_calls
from tests.support.cli import CliRun, explain, in_process_cli, json_out
from tests.support.processes import WorkerFactory
from tests.support.receiver import API_TOKEN, WEBHOOK_SECRET, signed_headers
from tests.support.records import finished
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from tests.web.test_console import csrf_of, sign_in
from worker import enqueue_resend, get_resend
from worker.sandbox import SandboxControl
from worker.web.app import create_app

pytestmark = pytest.mark.integration

CONSOLE_ORDER = "RA251206-8101-01"
BOUNCED_ORDER = "RA251206-8102-01"
RETRIED_ORDER = "RA251206-8103-01"


@pytest.fixture(params=["off", "on"])
def guard(
    request: pytest.FixtureRequest, settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """The producer's settings (this process): the guard off, or on for 10 minutes."""
    span = "600" if request.param == "on" else "0"
    apply_settings(
        {"RESEND_RECENT_SECONDS": span, "WEBHOOK_SECRET": WEBHOOK_SECRET, "API_TOKEN": API_TOKEN},
        monkeypatch.setenv,
    )
    return str(request.param)


@pytest.fixture
def web(guard: str) -> Iterator[TestClient]:
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


def sends(control: SandboxControl, order: str) -> int:
    return len(accepted_sends(resend_calls(control, order)))


def sent(request_id: str) -> bool:
    record = get_resend(request_id)
    return record is not None and record.status.value == "sent"


def test_a_console_double_submit(
    guard: str, web: TestClient, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    control.add_order(CONSOLE_ORDER)
    start_worker()
    sign_in(web)
    form = {"csrf": csrf_of(web.get("/console").text), "referenceOrderID": CONSOLE_ORDER}

    first = web.post("/console/resends", data=form)
    assert first.status_code == 303
    first_id = first.headers["location"].split("/")[-1].split("?")[0]
    wait_for(lambda: sent(first_id), timeout=15, what="the first resend sent")

    again = web.post("/console/resends", data=form)  # Back, submit
    if guard == "on":
        assert again.status_code == 409 and first_id in again.text
        assert "last resent" in again.text
    else:
        assert again.status_code == 303
        second_id = again.headers["location"].split("/")[-1].split("?")[0]
        wait_for(lambda: sent(second_id), timeout=15, what="the second resend sent")
    expected = 1 if guard == "on" else 2
    wait_for(lambda: sends(control, CONSOLE_ORDER) >= expected, timeout=15, what="the sends")
    assert sends(control, CONSOLE_ORDER) == expected


def test_two_bounce_events_with_different_ids(
    guard: str, web: TestClient, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    control.add_order(BOUNCED_ORDER)
    start_worker()
    body = json.dumps({"referenceOrderID": BOUNCED_ORDER, "newEmail": "pat@example.com"}).encode()

    def bounce(event_id: str) -> dict[str, str]:
        headers = signed_headers(WEBHOOK_SECRET, body, webhook_id=event_id)
        answer = web.post("/webhooks/resends", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    first = bounce("evt_bounce_1")
    wait_for(lambda: sent(first["id"]), timeout=15, what="the first resend sent")
    second = bounce("evt_bounce_2")

    if guard == "on":
        assert second == {**first, "status": "sent", "duplicate": True, "recent": True}
        assert sends(control, BOUNCED_ORDER) == 1
        record = get_resend(first["id"])
        assert record is not None and record.origin == "webhook evt_bounce_1"
    else:
        assert second["id"] != first["id"]
        wait_for(lambda: sent(second["id"]), timeout=15, what="the second resend sent")
        assert sends(control, BOUNCED_ORDER) == 2


def test_retry_all_failed_after_the_order_was_sent(
    guard: str, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """A request failed (Tango refused it once); the agent resent the order by hand, which
    went; later `retry --all-failed` retries the failed one."""
    run_cli: CliRun = in_process_cli()
    control.add_order(RETRIED_ORDER)
    control.inject_fault(RETRIED_ORDER, status=400)
    start_worker()
    failed_id = enqueue_resend(RETRIED_ORDER)
    wait_for(lambda: finished([failed_id]), timeout=15, what="the failure")
    by_hand = enqueue_resend(RETRIED_ORDER, origin="support-macro")
    wait_for(lambda: sent(by_hand), timeout=15, what="the resend by hand")

    # Tango's 400 is a permanent failure, which --all-failed skips unless asked.
    retried = run_cli("retry", "--all-failed", "--include-permanent")
    assert retried.exit_code == 0, explain(retried)
    if guard == "on":
        assert retried.stdout.splitlines() == [
            f"{failed_id} -> {by_hand} (recent: sent to the same recipient moments ago)",
            "0 failed request(s) queued again, 0 already retried, 1 recent (not sent again)",
        ]
        assert sends(control, RETRIED_ORDER) == 1
        (forced,) = json_out(
            run_cli("retry", "--all-failed", "--include-permanent", "--force", "--json")
        )
        assert forced["id"] != by_hand and not forced["recent"], "--force sends anyway"
        wait_for(lambda: sent(forced["id"]), timeout=15, what="the forced retry sent")
        assert sends(control, RETRIED_ORDER) == 2
        (again,) = json_out(
            run_cli("retry", "--all-failed", "--include-permanent", "--force", "--json")
        )
        assert (again["id"], again["already_retried"]) == (forced["id"], True), "once"
    else:
        retry_id = retried.stdout.split(" -> ")[1].split()[0]
        wait_for(lambda: sent(retry_id), timeout=15, what="the retry sent")
        assert sends(control, RETRIED_ORDER) == 2
        record = get_resend(retry_id)
        assert record is not None and record.origin == f"retry of {failed_id}"
        assert record.requested_by is not None and record.requested_by.startswith("cli ")
    hand = get_resend(by_hand)
    assert hand is not None and hand.origin == "python support-macro"
