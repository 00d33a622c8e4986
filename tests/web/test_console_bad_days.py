"""The web app on a bad day: Redis gone mid-session (the console's own 503 page, a JSON
problem elsewhere, /metrics still answering from the process's memory), and the console's
Retry skipping a failure Tango would refuse again."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.receiver import API_TOKEN
from tests.support.redis_server import RedisServer
from tests.support.settings import apply_settings
from worker import enqueue_resend, get_resend
from worker.core.conditions import REDIS_UNREACHABLE
from worker.runtime import current_runtime
from worker.state.records import KEEP_WINDOW, PROMOTE_MARGIN_SECONDS, ResendStatus
from worker.web.app import create_app
from worker.web.console import REDIS_UNREACHABLE_MESSAGE

ORDER = "RA251125-3901-01"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: TestClient) -> None:
    form = client.get("/console/signin")
    answer = client.post(
        "/console/signin",
        data={"csrf": csrf_of(form.text), "token": API_TOKEN, "next": "/console"},
    )
    assert answer.status_code == 303, answer.text


@pytest.fixture
def own_web(
    web_env: dict[str, str], own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The app on a Redis of the test's own, which the test may stop."""
    apply_settings({"REDIS_URL": own_redis.url()}, monkeypatch.setenv)
    REDIS_UNREACHABLE.clear()
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client
    REDIS_UNREACHABLE.clear()


def metric_values(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def test_with_redis_down_the_console_answers_its_own_503_page_and_metrics_stay_alive(
    own_web: TestClient, own_redis: RedisServer
) -> None:
    """Given a signed-in agent and Redis stopped; Then every console page, sign-in
    included, answers 503 with the console's look and "Redis is unreachable; nothing was
    changed"; the API answers a JSON problem; /metrics answers 200 with redis_up 0."""
    sign_in(own_web)
    assert metric_values(own_web.get("/metrics").text)["tango_resend_redis_up"] == 1.0

    own_redis.stop()

    form = own_web.get("/console/signin")  # the form itself needs no Redis
    signing_in = own_web.post(
        "/console/signin", data={"csrf": csrf_of(form.text), "token": API_TOKEN}
    )
    for answer in (own_web.get("/console"), own_web.get("/console/fleet"), signing_in):
        assert answer.status_code == 503, answer.text
        assert REDIS_UNREACHABLE_MESSAGE in answer.text
        assert "tango-resend console" in answer.text and "console.css" in answer.text
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
    api = own_web.get("/resends/abc", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert api.status_code == 503 and api.json()["error"] == "unavailable"
    metrics = own_web.get("/metrics")
    assert metrics.status_code == 200
    values = metric_values(metrics.text)
    assert values["tango_resend_redis_up"] == 0.0
    assert values["tango_resend_tango_up"] == 1.0
    assert REDIS_UNREACHABLE.active

    own_redis.start()
    assert metric_values(own_web.get("/metrics").text)["tango_resend_redis_up"] == 1.0
    assert not REDIS_UNREACHABLE.active


def fail_permanently(request_id: str) -> None:
    """Store the request as Tango's 404 (unknown order) left it."""
    runtime = current_runtime()
    record = runtime.records.get(request_id)
    assert record is not None
    record.status = ResendStatus.FAILED
    record.reason = "Tango refused the resend: Order not found status=404 i18nKey=404.017"
    record.error = {"kind": "TangoPermanentError", "status": 404, "i18n_key": "404.017"}
    assert runtime.records.finish(record, PROMOTE_MARGIN_SECONDS, KEEP_WINDOW, "")


def test_the_consoles_retry_skips_a_permanent_failure_unless_ticked(
    web_env: dict[str, str],
) -> None:
    client = TestClient(create_app(), follow_redirects=False)
    sign_in(client)
    failed = enqueue_resend(ORDER)
    fail_permanently(failed)

    confirm = client.get(f"/console/requests/{failed}/retry")
    assert confirm.status_code == 200
    assert "refused this request for good" in confirm.text
    assert 'name="include_permanent"' in confirm.text
    csrf = csrf_of(confirm.text)

    skipped = client.post(f"/console/requests/{failed}/retry", data={"csrf": csrf})
    assert skipped.status_code == 409
    assert "failed permanently" in skipped.text
    assert get_resend(failed).status is ResendStatus.FAILED  # type: ignore[union-attr]

    taken = client.post(
        f"/console/requests/{failed}/retry", data={"csrf": csrf, "include_permanent": "1"}
    )
    assert taken.status_code == 303
    assert "retry_of=" in taken.headers["location"]


def test_a_request_waiting_on_an_outage_shows_its_own_status_and_reason(
    web_env: dict[str, str],
) -> None:
    """The waiting state is its own status, with its reason, in the REST API and the
    console (the CLI's `status`: tests/integration/test_bad_days_at_tango.py)."""
    runtime = current_runtime()
    waiting = enqueue_resend("RA251125-3902-01")
    record = runtime.records.get(waiting)
    assert record is not None
    record.status = ResendStatus.WAITING
    record.reason = "waiting: Tango unreachable since 14:02 UTC (ConnectionError: refused)"
    assert runtime.records.save(record, runtime.clock.timestamp() + 30)
    client = TestClient(create_app(), follow_redirects=False)

    api = client.get(f"/resends/{waiting}", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert api.status_code == 200
    assert (api.json()["status"], api.json()["reason"]) == ("waiting", record.reason)
    listed = client.get(
        "/resends", params={"status": "waiting"}, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert listed.status_code == 200, listed.text
    assert waiting in listed.text
    sign_in(client)
    page = client.get(f"/console/requests/{waiting}")
    assert page.status_code == 200
    assert 'data-status="waiting"' in page.text
    assert "waiting: Tango unreachable since 14:02 UTC" in page.text
    fleet = client.get("/console/fleet")
    assert "Tango to come back" in fleet.text
