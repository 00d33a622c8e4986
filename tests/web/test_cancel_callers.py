"""A cancel names how many callers share the request: identical requests merged into one got
its id, so one caller's cancel cancels the resend for all of them. The Python API, the REST
API, the console's confirmation and the CLI say so (real Redis; the CLI as a subprocess)."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from tests.support.processes import run_python
from tests.support.receiver import API_TOKEN
from tests.support.settings import apply_settings
from worker import cancel_resend, cancel_resend_detailed, enqueue_resend, submit_resend
from worker.state.records import SubmissionOutcome
from worker.web.app import create_app

ORDER = "RA251125-2901-01"
WRITE = {"Authorization": f"Bearer {API_TOKEN}"}


def shared_by(callers: int, order: str = ORDER) -> str:
    """A request that `callers` callers asked for: the first, then identical ones merged."""
    first = submit_resend({"referenceOrderID": order, "newEmail": "pat@example.com"})
    for _ in range(callers - 1):
        merged = submit_resend({"referenceOrderID": order, "newEmail": "pat@example.com"})
        assert merged.outcome is SubmissionOutcome.MERGED
        assert merged.request_id == first.request_id
    return first.request_id


@pytest.fixture
def client(web_env: dict[str, str]) -> TestClient:
    return TestClient(create_app(), follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_the_python_api_names_the_callers_a_cancel_cancels_for(web_env: dict[str, str]) -> None:
    request_id = shared_by(3)

    cancellation = cancel_resend_detailed(request_id)

    assert cancellation.result == "cancelled"
    assert (cancellation.callers, cancellation.others) == (3, 2)
    assert cancel_resend(request_id) == "cancelled", "the plain answer is as it always was"
    assert cancel_resend_detailed("no-such-request").callers == 0


def test_the_rest_api_answers_how_many_callers_share_the_request(client: TestClient) -> None:
    alone, shared = enqueue_resend(ORDER), shared_by(2, "RA251125-2901-02")

    first = client.post(f"/resends/{shared}/cancel", headers=WRITE)
    again = client.post(f"/resends/{shared}/cancel", headers=WRITE)
    single = client.post(f"/resends/{alone}/cancel", headers=WRITE)

    assert (first.status_code, first.json()) == (200, {"result": "cancelled", "callers": 2})
    assert (again.status_code, again.json()) == (409, {"result": "cancelled", "callers": 2})
    assert single.json() == {"result": "cancelled", "callers": 1}
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "callers" in schema["CancelAnswer"]["properties"]


def test_the_console_confirmation_says_when_others_share_the_request(
    client: TestClient, web_env: dict[str, str]
) -> None:
    form = client.get("/console/signin")
    signed = client.post(
        "/console/signin",
        data={"csrf": csrf_of(form.text), "token": API_TOKEN, "next": "/console"},
    )
    assert signed.status_code == 303
    alone, shared = enqueue_resend(ORDER), shared_by(3, "RA251125-2901-03")

    asked = client.get(f"/console/requests/{shared}/cancel")
    plain = client.get(f"/console/requests/{alone}/cancel")

    assert "2 other callers share this request" in asked.text
    assert "cancels the resend for them too" in asked.text
    assert "share this request" not in plain.text
    done = client.post(f"/console/requests/{shared}/cancel", data={"csrf": csrf_of(asked.text)})
    assert done.headers["location"] == f"/console/requests/{shared}?cancel=cancelled"


def test_the_cli_says_whom_else_it_cancelled_for(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**web_env, "TANGO_PLATFORM_NAME": "platform", "TANGO_PLATFORM_KEY": "key"}
    apply_settings(env, monkeypatch.setenv)
    shared, other = shared_by(2), shared_by(2, "RA251125-2901-04")

    text = run_python(["-m", "worker", "cancel", shared], env)
    as_json = run_python(["-m", "worker", "cancel", other, "--json"], env)

    assert text.returncode == 0, text.stderr
    assert "cancelled (also for 1 other caller" in text.stdout
    assert json.loads(as_json.stdout) == {"id": other, "result": "cancelled", "callers": 2}
