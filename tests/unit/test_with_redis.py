"""scripts/with-redis.sh, what `make demo` runs in: a redis-server it started is stopped when
the command ends (however it ends); a Redis that already answered is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.support.processes import REPO_ROOT, free_port
from tests.support.redis_db import TEST_REDIS_URL

PING = "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()"


def run_with_redis(workdir: Path, url: str, *command: str) -> subprocess.CompletedProcess[str]:
    venv = Path(sys.executable).parent.parent
    return subprocess.run(
        [str(REPO_ROOT / "scripts/with-redis.sh"), *command],
        cwd=workdir,
        env={**os.environ, "REDIS_URL": url, "VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.ConnectionError:
        return False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
@pytest.mark.parametrize("exit_code", [0, 3])
def test_a_redis_started_for_the_command_is_stopped_after_it(
    tmp_path: Path, exit_code: int
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert not answers(url)
    done = run_with_redis(
        tmp_path, url, "bash", "-c", f'{sys.executable} -c "{PING}" {url} && exit {exit_code}'
    )
    assert done.returncode == exit_code, done.stderr
    assert "starting" in done.stderr and "stopped the redis-server" in done.stderr
    assert not answers(url), "the redis-server it started is gone"
    assert list((tmp_path / ".run").glob("redis-started.*")) == []


def test_a_redis_that_already_answered_is_left_running(tmp_path: Path) -> None:
    done = run_with_redis(tmp_path, TEST_REDIS_URL, sys.executable, "-c", PING, TEST_REDIS_URL)
    assert done.returncode == 0, done.stderr
    assert "stopped" not in done.stderr and answers(TEST_REDIS_URL)
