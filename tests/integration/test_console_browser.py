"""The support console in a real browser: Debian's chromium driven by Playwright, against the
web app and a real worker as processes, and the sandbox as Tango.

No test downloads a browser: chromium is Debian's (`make test-tools` installs it), launched
through `executable_path`. Without it the tests skip locally and fail in CI. The screenshots
they take are the README's (docs/console-*.png), written there only when asked
(UPDATE_SCREENSHOTS=1): a test run leaves the work tree as it found it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO_ROOT, WebProcess, WorkerFactory
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend
from worker.sandbox import SandboxControl

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "console-browser-token-7Hq2-0123456789abcdef"
ORDER = "RA251125-4001-01"
OTHER_ORDER = "RA251125-4001-02"
DOCS = REPO_ROOT / "docs"
# UPDATE_SCREENSHOTS=1 writes the screenshots over the README's (docs/console-*.png); without
# it they go to the test's temporary directory, so `make test` never dirties the work tree.
UPDATE_SCREENSHOTS = "UPDATE_SCREENSHOTS"
LIVE_TIMEOUT_MS = 20_000

sync_api = pytest.importorskip("playwright.sync_api")


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the screenshots go: docs/ when UPDATE_SCREENSHOTS=1, else `tmp_path`."""
    return DOCS if os.environ.get(UPDATE_SCREENSHOTS) == "1" else tmp_path


def test_screenshots_go_to_docs_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UPDATE_SCREENSHOTS, raising=False)
    assert screenshot_dir(tmp_path) == tmp_path
    monkeypatch.setenv(UPDATE_SCREENSHOTS, "1")
    assert screenshot_dir(tmp_path) == DOCS


@pytest.fixture
def chromium_path() -> str:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        message = f"no chromium at {CHROMIUM} (make test-tools installs Debian's)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def web(settings_env: dict[str, str], tmp_path: Path) -> Iterator[WebProcess]:
    env = {**settings_env, "WEBHOOK_ALLOW_UNSIGNED": "true", "API_TOKEN": TOKEN}
    process = WebProcess(env, tmp_path / "web.log").wait_ready()
    yield process
    process.stop()


@pytest.fixture
def page(chromium_path: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        yield context.new_page()
        context.close()
        browser.close()


def sign_in(page: Any, web: WebProcess, token: str = TOKEN) -> None:
    page.goto(f"{web.url}/console")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_find_an_order_resend_to_a_new_email_watch_it_sent_and_cancel_another(
    page: Any,
    web: WebProcess,
    control: SandboxControl,
    start_worker: WorkerFactory,
    tmp_path: Path,
) -> None:
    screenshots = screenshot_dir(tmp_path)  # docs/ only with UPDATE_SCREENSHOTS=1
    control.add_order(ORDER)
    control.add_order(OTHER_ORDER)
    earlier = enqueue_resend(ORDER)

    # Sign in: the console sends us to its sign-in page first.
    page.goto(f"{web.url}/console")
    assert "/console/signin" in page.url
    sign_in(page, web)
    sync_api.expect(page.get_by_role("heading", name="Find an order or a request")).to_be_visible()

    # Cancel another request, while no worker runs: it waits, so it can still be cancelled.
    page.get_by_label("Order id (required)").fill(OTHER_ORDER)
    page.get_by_role("button", name="Queue resend").click()
    sync_api.expect(page.locator("[data-status]")).to_have_text("queued")
    to_cancel = page.url.split("/console/requests/")[1].split("?")[0]
    page.get_by_role("link", name="Cancel this request…").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    sync_api.expect(page.get_by_text("Cancelled: it will not be sent.")).to_be_visible()
    sync_api.expect(page.locator("[data-status]")).to_have_text("cancelled")
    cancelled = get_resend(to_cancel)
    assert cancelled is not None and cancelled.status.value == "cancelled"

    # Find an order: its history, every call, Tango's request ids.
    start_worker()
    wait_for(lambda: _status(earlier) == "sent", timeout=20, what="the earlier resend")
    page.get_by_role("link", name="Find & resend").click()
    page.get_by_label("Order id or request id").fill(ORDER)
    page.keyboard.press("Enter")
    sync_api.expect(page.get_by_role("heading", name=f"Order {ORDER}")).to_be_visible()
    record = get_resend(earlier)
    assert record is not None and record.tango_request_ids
    sync_api.expect(page.get_by_text(record.tango_request_ids[0])).to_be_visible()

    # Resend to a new email, and follow it live until it is sent. Someone just resent the order
    # in Tango's portal (a 4-second cooldown here), so it is deferred first, and says why.
    control.configure(cooldown_seconds=4)
    control.portal_resend(ORDER)
    page.get_by_label("New email").fill("pat.new@example.com")
    page.get_by_role("button", name="Queue resend").click()
    sync_api.expect(page.get_by_text("Resend queued.")).to_be_visible()
    sync_api.expect(page.locator("[data-status]")).to_have_text("deferred", timeout=LIVE_TIMEOUT_MS)
    sync_api.expect(page.locator("#live .reason")).to_contain_text("cooldown")
    sync_api.expect(page.locator("[data-status]")).to_have_text("sent", timeout=LIVE_TIMEOUT_MS)
    request_id = page.url.split("/console/requests/")[1].split("?")[0]
    sent = get_resend(request_id)
    assert sent is not None and sent.request == {"newEmail": "pat.new@example.com"}
    sync_api.expect(page.get_by_text("pat.new@example.com").first).to_be_visible()
    page.screenshot(path=str(screenshots / "console-request.png"), full_page=True)

    page.goto(f"{web.url}/console/orders/{ORDER}")
    page.screenshot(path=str(screenshots / "console-order.png"), full_page=True)
    page.goto(f"{web.url}/console/fleet")
    sync_api.expect(page.locator(".workers li")).to_have_count(1)
    page.screenshot(path=str(screenshots / "console-fleet.png"), full_page=True)
    for name in ("request", "order", "fleet"):
        assert (screenshots / f"console-{name}.png").stat().st_size > 0


def _status(request_id: str) -> str | None:
    record = get_resend(request_id)
    return None if record is None else record.status.value


def test_a_wrong_token_and_a_post_without_a_csrf_token_are_refused(
    page: Any, web: WebProcess
) -> None:
    sign_in(page, web, "not-the-token-at-all")
    sync_api.expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    assert "/console/signin" in page.url

    sign_in(page, web)
    cookie = next(c for c in page.context.cookies() if c["name"] == "tango_resend_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # The session cookie alone is not enough to act: a form must carry the CSRF token.
    forged = page.context.request.post(
        f"{web.url}/console/resends", form={"referenceOrderID": ORDER}, max_redirects=0
    )
    assert forged.status == 403 and "CSRF" in forged.text()
    listed = page.context.request.get(
        f"{web.url}/resends", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert listed.json()["items"] == []


def test_the_resend_form_can_be_walked_with_the_keyboard_alone(page: Any, web: WebProcess) -> None:
    page.goto(f"{web.url}/console")
    page.keyboard.type(TOKEN)  # the token field has the focus
    page.keyboard.press("Enter")
    sync_api.expect(page.get_by_role("heading", name="Find an order or a request")).to_be_visible()

    page.keyboard.press("Tab")
    assert _focused(page) == "Skip to content"
    order_of_focus = _tab_until(page, "referenceOrderID")
    assert order_of_focus[-3:] == ["q", "Find", "referenceOrderID"]
    page.keyboard.type(ORDER)
    page.keyboard.press("Tab")
    page.keyboard.type("not-an-email")
    for expected in ("newMobile", "newEtid", "newDeliveryMethod", "Queue resend"):
        page.keyboard.press("Tab")
        assert _focused(page) == expected
    page.keyboard.press("Enter")

    # Refused inline, with the API's message, and the focus is on the field to fix.
    sync_api.expect(page.locator("#newEmail-error")).to_have_text("is not a valid email address")
    assert _focused(page) == "newEmail"
    page.keyboard.press("Control+A")
    page.keyboard.type("pat.keys@example.com")
    for _ in range(4):
        page.keyboard.press("Tab")
    assert _focused(page) == "Queue resend"
    page.keyboard.press("Enter")
    sync_api.expect(page.get_by_text("Resend queued.")).to_be_visible()
    sync_api.expect(page.locator("[data-status]")).to_have_text("queued")


def _focused(page: Any) -> str:
    text: str = page.evaluate(
        "() => { const e = document.activeElement;"
        " return e.id || (e.innerText || e.value || '').trim(); }"
    )
    return text


def _tab_until(page: Any, element_id: str, most: int = 15) -> list[str]:
    """Press Tab until `element_id` has the focus; what had it after each press."""
    seen: list[str] = []
    while len(seen) < most:
        page.keyboard.press("Tab")
        seen.append(_focused(page))
        if seen[-1] == element_id:
            return seen
    raise AssertionError(f"{element_id} never got the focus: {seen}")
