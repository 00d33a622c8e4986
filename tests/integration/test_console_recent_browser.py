"""The console's recent-resend warning and its "send anyway" in a real browser (Debian's
chromium driven by Playwright), against the web app and a real worker as processes and the
sandbox as Tango, with RESEND_RECENT_SECONDS set and a named agent (API_TOKENS).

The double submit a new user made (submit, Back, submit) sends once; sending again needs
"Send anyway…" and then "Yes, send it again"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_console_browser import LIVE_TIMEOUT_MS, chromium_path, page, sync_api
from tests.support.calls import accepted_sends, resend_calls
from tests.support.processes import WebProcess, WorkerFactory
from tests.support.waiting import wait_for
from worker import get_resend
from worker.sandbox import SandboxControl

__all__ = ["chromium_path", "page"]  # fixtures shared with the console's browser tests

AGENT_TOKEN = "agent-pat-token-3Kq9-console-recent-0123456"
ORDER = "RA251206-4101-01"


@pytest.fixture
def web(settings_env: dict[str, str], tmp_path: Path) -> Iterator[WebProcess]:
    env = {
        **settings_env,
        "WEBHOOK_ALLOW_UNSIGNED": "true",
        "API_TOKENS": f"pat:{AGENT_TOKEN}:write",
        "RESEND_RECENT_SECONDS": "600",
    }
    process = WebProcess(env, tmp_path / "web.log").wait_ready()
    yield process
    process.stop()


def test_a_double_submit_sends_once_and_send_anyway_needs_a_second_confirmation(
    page: Any, web: WebProcess, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    control.add_order(ORDER)
    start_worker()
    page.goto(f"{web.url}/console")
    page.get_by_label("Access token").fill(AGENT_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page.locator("#signed-in-as")).to_contain_text("Signed in as pat")

    # Submit: sent.
    page.get_by_label("Order id (required)").fill(ORDER)
    page.get_by_label("New email").fill("pat.recipient@example.com")
    page.get_by_role("button", name="Queue resend").click()
    sync_api.expect(page.locator("[data-status]")).to_have_text("sent", timeout=LIVE_TIMEOUT_MS)
    first = page.url.split("/console/requests/")[1].split("?")[0]
    sync_api.expect(page.locator("#origin")).to_have_text("console pat")

    # Back, submit again (the form is not kept: pages are no-store): not sent; the page
    # names the resend that went out.
    page.go_back()
    page.get_by_label("Order id (required)").fill(ORDER)
    page.get_by_label("New email").fill("pat.recipient@example.com")
    page.get_by_role("button", name="Queue resend").click()
    heading = page.get_by_role("heading", name="Not sent: this order was just resent")
    sync_api.expect(heading).to_be_visible()
    sync_api.expect(page.locator("#earlier")).to_have_text(first)
    sync_api.expect(page.locator(".last-resent")).to_contain_text("to p***@example.com")

    # "Send anyway…" asks again; cancelling there sends nothing.
    page.get_by_role("button", name="Send anyway…").click()
    sync_api.expect(page.get_by_role("heading", name="Send this resend again?")).to_be_visible()
    assert len(accepted_sends(resend_calls(control, ORDER))) == 1
    page.get_by_role("button", name="Yes, send it again").click()
    sync_api.expect(page.locator("[data-status]")).to_have_text("sent", timeout=LIVE_TIMEOUT_MS)
    forced = page.url.split("/console/requests/")[1].split("?")[0]
    sync_api.expect(page.locator("#origin")).to_contain_text("sent anyway")

    record = get_resend(forced)
    assert forced != first and record is not None and record.forced
    wait_for(
        lambda: len(accepted_sends(resend_calls(control, ORDER))) == 2,
        timeout=10,
        what="the forced resend at Tango",
    )
    # The order's page warns before anyone asks again.
    page.goto(f"{web.url}/console/orders/{ORDER}")
    sync_api.expect(page.locator(".last-resent").first).to_contain_text("last resent")
