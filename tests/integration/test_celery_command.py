"""`celery -A worker worker` ("works too", README) runs as `tango-resend worker` does: a
threads pool of WORKER_CONCURRENCY, logging at LOG_LEVEL; Celery's own options still win."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.processes import REPO_ROOT, WorkerFactory, child_env

pytestmark = pytest.mark.integration


def started_banner(settings: dict[str, str], *options: str) -> str:
    """The worker's output up to "ready", then it is stopped."""
    celery = str(Path(sys.executable).parent / "celery")
    process = subprocess.Popen(
        [celery, "-A", "worker", "worker", "--without-gossip", "--without-mingle", *options],
        env=child_env(settings),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        for line in process.stdout:
            lines.append(line)
            if " ready." in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        process.stdout.close()
    return "".join(lines)


def test_celery_worker_reads_worker_concurrency_and_log_level(
    settings_env: dict[str, str],
) -> None:
    output = started_banner({**settings_env, "WORKER_CONCURRENCY": "3", "LOG_LEVEL": "INFO"})
    assert "concurrency: 3 (thread)" in output, output
    assert " ready." in output, "an INFO line: LOG_LEVEL, not Celery's WARNING default"


@pytest.mark.parametrize(
    ("options", "pool"),
    [(["-P", "solo"], "solo"), (["--pool=prefork", "-c", "1"], "prefork")],
    ids=["solo", "prefork"],
)
def test_celery_options_still_win(
    settings_env: dict[str, str], options: list[str], pool: str
) -> None:
    """Given --pool (even prefork, which Celery cannot tell from its default) and --loglevel,
    those are what runs."""
    output = started_banner(
        {**settings_env, "WORKER_CONCURRENCY": "3", "LOG_LEVEL": "WARNING"},
        *options,
        "--loglevel",
        "INFO",
    )
    assert f"({pool})" in output, output
    assert " ready." in output


def test_the_compose_worker_healthcheck_answers_for_a_live_worker_only(
    start_worker: WorkerFactory, settings_env: dict[str, str]
) -> None:
    """docker-compose.yml's worker healthcheck, run as compose would (its `$$` is a `$`),
    in the worker's environment: healthy while the worker runs, unhealthy once it is gone."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    kind, command = compose["services"]["worker"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    env = child_env(settings_env)
    env["HOSTNAME"] = socket.gethostname()  # what Celery's %h is, and what a container sets
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", command.replace("$$", "$")],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    worker = start_worker("celery")  # Celery's default node name: celery@<hostname>
    healthy = check()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    worker.stop()
    assert check().returncode != 0
