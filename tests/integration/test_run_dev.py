"""`make run-dev` from a fresh shell (nothing activated), and the README's webhook examples
copy-pasted against it: the first hour of a new user, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from tests.support.processes import REPO_ROOT, free_port
from tests.support.readme import readme_block
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.settings import new_tag
from tests.support.waiting import wait_for
from worker.core.settings import Settings, reset_settings_cache
from worker.runtime import reset_runtime
from worker.state.records import ResendRecord

pytestmark = pytest.mark.integration


@dataclass
class RunDev:
    url: str
    env: dict[str, str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def fresh_shell_env(settings: dict[str, str]) -> dict[str, str]:
    """A shell where nothing is activated: no .venv/bin on PATH, no tango-resend settings."""
    names = {name.upper() for name in Settings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in names and not key.startswith("PYTEST") and key != "VIRTUAL_ENV"
    }
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if part != venv_bin
    )
    env.update(settings)
    return env


@pytest.fixture
def run_dev(redis_client: redis.Redis, tmp_path: Path) -> Iterator[RunDev]:
    if (REPO_ROOT / ".env").exists():
        pytest.skip("a .env in the checkout: this test is about the out-of-the-box setup")
    tag = new_tag()
    sandbox_port, web_port = free_port(), free_port()
    # Set in the shell, so they must win over .env.example's (database 0, port 8765).
    settings = {
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": f"rundev-{tag}",
        "RESEND_QUEUE": f"rundev-{tag}",
        "TANGO_BASE_URL": f"http://127.0.0.1:{sandbox_port}/raas/v2",
        "SANDBOX_PORT": str(sandbox_port),
        "WEB_PORT": str(web_port),
    }
    env = fresh_shell_env(settings)
    log_path = tmp_path / "run-dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run-dev"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = RunDev(f"http://127.0.0.1:{web_port}", settings, log_path)
    try:

        def healthy() -> bool:
            assert process.poll() is None, f"make run-dev exited:\n{started.log()}"
            try:
                return requests.get(f"{started.url}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, timeout=60, interval=0.2, what="the receiver of make run-dev")
        yield started
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def sent_record(request_id: str) -> ResendRecord | None:
    from worker.resend.producer import get_resend

    record = get_resend(request_id)
    return record if record is not None and record.status.value == "sent" else None


def test_make_run_dev_works_from_a_fresh_shell_and_the_readme_examples_resend(
    run_dev: RunDev, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a shell with nothing activated and REDIS_URL/TANGO_BASE_URL of its own, when
    `make run-dev` runs, then every process starts (no `tango-resend: not found`), the shell's
    settings win over .env.example (and are named), and the README's curl and Python examples,
    copy-pasted, are accepted on port WEB_PORT (8000 by default) and resent by the worker."""
    shell_example = readme_block(
        "<!-- webhook-example:start -->", "<!-- webhook-example:end -->", "sh"
    )
    python_example = readme_block(
        "<!-- webhook-python-example:start -->", "<!-- webhook-python-example:end -->", "python"
    )
    example_env = {**os.environ, "URL": run_dev.url}
    example_env.pop("WEBHOOK_SECRET", None)  # the examples read make run-dev's own secret

    curl = subprocess.run(
        ["bash", "-c", shell_example],
        cwd=REPO_ROOT,
        env=example_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert curl.returncode == 0, curl.stderr
    from_curl = json.loads(curl.stdout)
    python = subprocess.run(
        [sys.executable, "-c", python_example],
        cwd=REPO_ROOT,
        env=example_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert python.returncode == 0, python.stderr
    status, _, answer = python.stdout.strip().partition(" ")
    assert status == "202", python.stdout
    from_python = json.loads(answer)

    setting_names = {name.upper() for name in Settings.model_fields}
    for name, value in run_dev.env.items():
        if name in setting_names:
            monkeypatch.setenv(name, value)
    reset_settings_cache()
    reset_runtime()
    for answer_json in (from_curl, from_python):
        assert answer_json["status"] == "queued" and answer_json["duplicate"] is False
        wait_for(
            lambda request_id=answer_json["id"]: sent_record(request_id),
            timeout=60,
            interval=0.2,
            what=f"request {answer_json['id']} sent; log:\n{run_dev.log()}",
        )
    log = run_dev.log()
    assert "not found" not in log
    assert f"the receiver: http://127.0.0.1:{run_dev.env['WEB_PORT']}" in log
    assert ".run/dev-api-token" in log and ". .run/dev.env" in log

    # The README's REST API example, and the CLI in another shell, against the same stack.
    rest_example = readme_block("<!-- rest-example:start -->", "<!-- rest-example:end -->", "sh")
    rest = subprocess.run(
        ["bash", "-c", rest_example.replace("localhost:8000", run_dev.url)],
        cwd=REPO_ROOT,
        env={**example_env, "API_TOKEN": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert rest.returncode == 0, rest
    # The same order and recipient as the curl example, just sent: run-dev's .env.example turns
    # the recent-resend guard on, so the API answers with that request ("Asked twice").
    assert json.loads(rest.stdout) == {
        "id": from_curl["id"],
        "status": "sent",
        "duplicate": True,
        "coalesced": False,
        "recent": True,
    }
    other_shell = fresh_shell_env({})
    status = subprocess.run(
        ["bash", "-c", f". .run/dev.env && .venv/bin/tango-resend status {from_curl['id']} --json"],
        cwd=REPO_ROOT,
        env=other_shell,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "sent"
    assert "REDIS_URL from your shell overrides .env.example" in log
    assert "TANGO_BASE_URL from your shell overrides .env.example" in log
