"""The producer install: `pip install tango-resend` with no extra brings Redis and validation
only (no Celery, FastAPI, uvicorn or requests), and an application can enqueue with it; a real
worker (the full install) then sends what it queued."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import WorkerFactory, child_env
from tests.support.records import finished
from tests.support.slim_install import base_closure, make_slim_venv
from tests.support.waiting import wait_for
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

ORDER = "RA251125-2301-01"
HEAVY = ("celery", "kombu", "fastapi", "uvicorn", "starlette", "requests", "click", "rich")

APP = """
import asyncio, json, sys
from tango_resend import (
    InvalidResendRequest, ResendStatus, enqueue_resend, get_resend, submit_resend_async,
)

request_id = enqueue_resend(sys.argv[1], new_email="pat@example.com", idempotency_key="slim-1")
again = enqueue_resend(sys.argv[1], new_email="pat@example.com", idempotency_key="slim-1")
fields = {"referenceOrderID": sys.argv[1], "newEmail": "pat@example.com"}
merged = asyncio.run(submit_resend_async(fields))
try:
    enqueue_resend("RA-nope")
    refused = None
except InvalidResendRequest as error:
    refused = error.errors
heavy = sorted(name for name in sys.modules if name.split(".")[0] in sys.argv[2].split(","))
print(json.dumps({
    "id": request_id, "again": again, "merged": [merged.request_id, merged.outcome],
    "status": get_resend(request_id).status.value, "refused": refused, "heavy": heavy,
}))
"""


def test_the_base_install_is_slim(tmp_path: Path) -> None:
    installed = base_closure()
    assert installed >= {"redis", "pydantic-settings", "tango-resend"}
    assert not installed & {"celery", "kombu", "fastapi", "uvicorn", "requests", "click"}
    assert len(installed) <= 16, sorted(installed)


def test_an_application_enqueues_with_the_slim_install_and_a_worker_sends_it(
    tmp_path: Path,
    control: SandboxControl,
    settings_env: dict[str, str],
    start_worker: WorkerFactory,
) -> None:
    python = make_slim_venv(tmp_path)
    for package in HEAVY:
        found = subprocess.run(
            [str(python), "-c", f"import {package}"], capture_output=True, timeout=60
        )
        assert found.returncode != 0, f"{package} is in the slim install"

    producer_env = {
        name: value
        for name, value in settings_env.items()
        if name in ("REDIS_URL", "REDIS_KEY_PREFIX", "RESEND_QUEUE")
    }  # a producer's settings: no Tango credentials
    env = child_env(producer_env)
    env.pop("PYTHONPATH")  # only the slim virtualenv's packages, not this checkout
    app = subprocess.run(
        [str(python), "-c", APP, ORDER, ",".join(HEAVY)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert app.returncode == 0, app.stderr
    answer = json.loads(app.stdout)
    assert answer["again"] == answer["id"] and answer["merged"] == [answer["id"], "merged"]
    assert answer["status"] == "queued" and answer["heavy"] == []
    assert set(answer["refused"]) == {"referenceOrderID"}

    cli = subprocess.run(
        [str(python.parent / "tango-resend"), "doctor"], env=env, capture_output=True, text=True
    )
    assert cli.returncode == 2 and "tango-resend[worker,web]" in cli.stderr

    control.add_order(ORDER)
    start_worker()
    (record,) = wait_for(lambda: finished([answer["id"]]), timeout=30, what="sent")
    assert record.status.value == "sent" and record.request == {"newEmail": "pat@example.com"}
