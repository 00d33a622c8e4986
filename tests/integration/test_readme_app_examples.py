"""Every snippet of the README's "Using it from your application" runs here, as written."""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
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
    status, answer = namespace["try_resend"](ORDER, "pat@example.com", 4411)
    assert status == 202
    record = current_runtime().records.get(answer["id"])
    assert record is not None and record.status.value == "queued"


@pytest.fixture
def django_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real Django, on SQLite, with one app whose models module the snippet becomes."""
    import django
    from django.conf import settings

    package = tmp_path / "readme_support"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["readme_support"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            USE_TZ=True,
        )
        django.setup()
    return "readme_support.models"


def test_django_keeps_a_resend_redis_could_not_take_after_the_commit(
    producer_env: dict[str, str], django_app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the README's Django snippet on a real Django and SQLite: nothing is queued
    before the commit nor after a rollback; a ticket action decided twice queues once; and
    with Redis down after the commit the resend stays in the table until the next
    `send_pending_resends`, which queues it."""
    from django.db import connection, transaction

    language, code = snippet("django")
    assert language == "python"
    namespace: dict[str, Any] = {"__name__": django_app}
    exec(compile(code, "README.md:django", "exec"), namespace)
    model = namespace["PendingResend"]
    with connection.schema_editor() as editor:
        editor.create_model(model)
    try:
        resend_reward, send_pending = namespace["resend_reward"], namespace["send_pending_resends"]
        records = current_runtime().records

        with transaction.atomic():
            resend_reward(ORDER, "pat@example.com", 4411, 1)
            resend_reward(ORDER, "pat@example.com", 4411, 1)  # the hook ran twice
            assert records.ids_for_order(ORDER) == [], "nothing before the commit"
        (first,) = records.ids_for_order(ORDER)
        assert model.objects.count() == 0

        with pytest.raises(RuntimeError), transaction.atomic():
            resend_reward(ORDER, "sam@example.com", 4411, 2)
            raise RuntimeError("the view failed: rolled back")
        assert records.ids_for_order(ORDER) == [first] and model.objects.count() == 0

        apply_settings({"REDIS_URL": unreachable_redis_url()}, monkeypatch.setenv)
        with transaction.atomic():
            resend_reward(ORDER, "sam@example.com", 4411, 3)  # committed; Redis is down
        assert model.objects.count() == 1, "kept, not lost"

        apply_settings(producer_env, monkeypatch.setenv)
        send_pending()
        assert model.objects.count() == 0
        second = [i for i in current_runtime().records.ids_for_order(ORDER) if i != first]
        assert len(second) == 1
        record = current_runtime().records.get(second[0])
        assert record is not None and record.request == {"newEmail": "sam@example.com"}
        send_pending()  # nothing left, nothing queued twice
        assert len(current_runtime().records.ids_for_order(ORDER)) == 2
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(model)


def test_async_code_calls_the_api_in_a_thread(producer_env: dict[str, str]) -> None:
    namespace = run_python("async")

    async def scenario() -> tuple[str, str | None]:
        request_id = await namespace["resend_reward"](ORDER, "a-1")
        assert await namespace["resend_reward"](ORDER, "a-1") == request_id, "same event"
        return request_id, await namespace["resend_status"](request_id)

    request_id, status = asyncio.run(scenario())
    assert request_id and status == "queued"
    assert asyncio.run(namespace["resend_status"](str(uuid.uuid4()))) is None


def test_async_code_can_submit_natively_and_wait(producer_env: dict[str, str]) -> None:
    """Given no worker, the snippet's wait ends in TimeoutError; the request was stored."""
    namespace = run_python("async-native")
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(namespace["resend_and_wait"](ORDER, "b-1"), timeout=0.5))
    (request_id,) = current_runtime().records.ids_for_order(ORDER)
    record = current_runtime().records.get(request_id)
    assert record is not None and record.status.value == "queued"


def test_a_bounce_event_resends_once_to_the_corrected_address(
    producer_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    on_bounce = run_python("bounce")["on_bounce"]
    event = {"id": "evt_8f2k", "order_id": ORDER, "type": "bounce"}
    status, answer = on_bounce(event, "pat@example.org")
    assert status == 202
    assert on_bounce(event, "pat@example.org") == (202, answer), "a redelivered event"
    record = current_runtime().records.get(answer["id"])
    assert record is not None and record.request == {"newEmail": "pat@example.org"}
    other = on_bounce({**event, "id": "evt_9x1q"}, "pat@example.net")
    assert other[0] == 202 and other[1] != answer, "another bounce: another resend"
    status, fields = on_bounce({**event, "id": "evt_0"}, "not-an-email")
    assert status == 422 and set(fields) == {"newEmail"}
    apply_settings({"REDIS_URL": unreachable_redis_url()}, monkeypatch.setenv)
    assert on_bounce({**event, "id": "evt_1"}, "pat@example.com")[0] == 503


def test_the_readme_names_exactly_what_the_package_exports() -> None:
    """Every name in the README's tables of functions, types and exceptions is exported by
    `tango_resend` and `worker`, and every export (but the Celery app) is in those tables."""
    import tango_resend
    import worker

    text = (REPO_ROOT / "README.md").read_text()
    tables = text.split("<!-- api-names:start -->")[1].split("<!-- api-names:end -->")[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", tables, flags=re.MULTILINE)
    named = {
        name for cell in first_cells for name in re.findall(r"`(?:await )?([A-Za-z_]\w*)", cell)
    } - set(dir(builtins))  # TimeoutError, and the ValueError an exception is
    assert named == set(tango_resend.__all__)
    assert named == set(worker.__all__) - {"app"}
    for name in named:
        assert getattr(tango_resend, name) is getattr(worker, name), name


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
    status, fields = try_resend(ORDER, "not-an-email", 4411)
    assert status == 400 and set(fields) == {"newEmail"}
    apply_settings({"REDIS_URL": unreachable_redis_url()}, monkeypatch.setenv)
    assert try_resend(ORDER, "pat@example.com", 4411) == (503, {"error": "try again later"})


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
