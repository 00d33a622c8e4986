"""Every snippet of the README's "Using it from your application" runs here, as written."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.processes import REPO_ROOT
from tests.support.redis_db import TEST_REDIS_URL, unreachable_redis_url
from tests.support.settings import apply_settings, new_tag
from worker.core.settings import Settings
from worker.runtime import current_runtime
from worker.state import scripts

pytestmark = pytest.mark.integration
ORDER = "RA251125-1401-01"


def snippet(name: str) -> tuple[str, str]:
    """(language, code) of the README block marked `<!-- app-example:NAME -->`."""
    text = (REPO_ROOT / "README.md").read_text()
    after = text.split(f"<!-- app-example:{name} -->\n", 1)[1]
    match = re.match(r"```(\w+)\n(.*?)```", after, flags=re.DOTALL)
    assert match, f"no code block after app-example:{name}"
    return match.group(1), match.group(2)


def run_python(name: str) -> dict[str, Any]:
    language, code = snippet(name)
    assert language == "python"
    namespace: dict[str, Any] = {"__name__": f"readme_{name}"}
    exec(compile(code, f"README.md:{name}", "exec"), namespace)
    return namespace


@pytest.fixture
def producer_env(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A producer's settings, exactly the names the README's settings snippet shows."""
    _, text = snippet("settings")
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert names == ["REDIS_URL", "REDIS_KEY_PREFIX", "RESEND_QUEUE"]
    assert {name.lower() for name in names} <= set(Settings.model_fields)
    tag = new_tag()
    env = {
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": f"app-{tag}",
        "RESEND_QUEUE": f"app-{tag}",
    }
    apply_settings(env, monkeypatch.setenv)  # and no Tango credentials at all
    return env


def test_a_producer_needs_only_the_shared_redis_settings(producer_env: dict[str, str]) -> None:
    namespace = run_python("errors")
    status, answer = namespace["try_resend"](ORDER, "pat@example.com")
    assert status == 202
    record = current_runtime().records.get(answer["id"])
    assert record is not None and record.status.value == "queued"


def test_django_on_commit_with_an_idempotency_key(
    producer_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given Django's transaction.on_commit (a stand-in that holds callbacks until commit),
    nothing is queued before the commit, and the same ticket never queues twice."""
    pending: list[Callable[[], object]] = []
    django = types.ModuleType("django")
    django_db = types.ModuleType("django.db")
    transaction = types.ModuleType("django.db.transaction")
    transaction.on_commit = pending.append  # type: ignore[attr-defined]
    django_db.transaction = transaction  # type: ignore[attr-defined]
    django.db = django_db  # type: ignore[attr-defined]
    for name, module in {
        "django": django,
        "django.db": django_db,
        "django.db.transaction": transaction,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)

    resend_reward = run_python("django")["resend_reward"]
    resend_reward(ORDER, "pat@example.com", 4411)
    resend_reward(ORDER, "pat@example.com", 4411)  # the hook ran twice
    assert current_runtime().records.ids_for_order(ORDER) == [], "nothing before the commit"
    ids = {callback() for callback in pending}
    assert len(ids) == 1 and current_runtime().records.ids_for_order(ORDER) == list(ids)


def test_async_code_calls_the_api_in_a_thread(producer_env: dict[str, str]) -> None:
    namespace = run_python("async")

    async def scenario() -> tuple[str, str | None]:
        request_id = await namespace["resend_reward"](ORDER)
        assert await namespace["resend_reward"](ORDER) == request_id, "same idempotency key"
        return request_id, await namespace["resend_status"](request_id)

    request_id, status = asyncio.run(scenario())
    assert request_id and status == "queued"
    assert asyncio.run(namespace["resend_status"](str(uuid.uuid4()))) is None


def test_async_code_can_submit_natively(producer_env: dict[str, str]) -> None:
    namespace = run_python("async-native")

    async def scenario() -> tuple[str, str]:
        first = await namespace["resend_reward_natively"](ORDER)
        return first, await namespace["resend_reward_natively"](ORDER)

    first, again = asyncio.run(scenario())
    assert first == again, "same idempotency key"
    record = current_runtime().records.get(first)
    assert record is not None and record.status.value == "queued"


def test_outcome_callbacks_are_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("RESULT_WEBHOOK_SECRET", secret)
    receive_outcome = run_python("outcomes")["receive_outcome"]
    body = json.dumps(
        {"id": "evt_r1_sent", "type": "resend.sent", "timestamp": 0, "data": {"id": "r1"}}
    )
    msg_id, now = "evt_r1_sent", datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }
    assert receive_outcome(body.encode(), headers) == ("r1", "resend.sent")
    with pytest.raises(WebhookVerificationError):
        receive_outcome(body.replace("r1", "r2").encode(), headers)


def test_errors_to_handle(producer_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    try_resend = run_python("errors")["try_resend"]
    status, fields = try_resend(ORDER, "not-an-email")
    assert status == 400 and set(fields) == {"newEmail"}
    apply_settings({"REDIS_URL": unreachable_redis_url()}, monkeypatch.setenv)
    assert try_resend(ORDER, "pat@example.com") == (503, {"error": "try again later"})


def test_the_install_snippet_builds_a_wheel_with_the_clash_free_package(tmp_path: Path) -> None:
    """The snippet's two commands, run in a copy of the project: the wheel builds, holds
    `tango_resend` beside `worker` and `tasks`, and pip accepts it (--dry-run --no-deps added:
    the test machine has no package index for the dependencies)."""
    language, text = snippet("install")
    assert language == "sh"
    build, install = (line for line in text.splitlines() if line.strip())
    project = tmp_path / "tango-resend"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, project / name)
    for package in ("worker", "tasks", "tango_resend"):
        shutil.copytree(
            REPO_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    python = shlex.quote(sys.executable)
    for command in (build, f"{install} --no-deps --dry-run"):
        done = subprocess.run(
            ["bash", "-c", command.replace("python ", f"{python} ", 1)],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    (wheel,) = (project / "dist").glob("tango_resend-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {"tango_resend", "worker", "tasks"} <= {name.split("/", 1)[0] for name in names}
    # The Lua scripts are package data: a wheel without them could not store a request.
    shipped = {name for name in names if name.startswith("worker/state/lua/")}
    assert {f"worker/state/lua/{script}.lua" for script in scripts.script_names()} <= shipped
