"""`tango-resend doctor [--json]` against the sandbox, real workers, and Redis servers of the
tests' own (one that evicts, one that is not there)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from tests.support.processes import WorkerFactory, free_port, run_python
from tests.support.receiver import OTHER_SECRET
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.redis_server import EVICTING_POLICY, RedisServer
from tests.support.sandbox import PLATFORM_KEY

pytestmark = pytest.mark.integration

NAMES = ["redis", "redis eviction", "redis persistence", "queue", "tango", "clock", "settings"]


def doctor(env: dict[str, str], *args: str) -> tuple[int, Any, str]:
    """`python -m worker doctor --json` as an operator runs it: exit code, JSON, stderr."""
    done = run_python(["-m", "worker", "doctor", "--json", *args], env)
    return done.returncode, json.loads(done.stdout), done.stderr


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def test_all_well_with_a_worker_the_sandbox_and_a_safe_redis(
    settings_env: dict[str, str], start_worker: WorkerFactory
) -> None:
    start_worker()
    code, report, stderr = doctor(settings_env)

    assert code == 0, (report, stderr)
    assert report["ok"] is True
    assert [check["name"] for check in report["checks"]] == NAMES
    assert all(set(check) == {"name", "ok", "detail"} for check in report["checks"])
    checks = by_name(report)
    assert checks["redis"]["detail"].startswith("Redis ")
    assert "round trip" in checks["redis"]["detail"]
    assert "noeviction" in checks["redis eviction"]["detail"]
    assert f"queue '{settings_env['RESEND_QUEUE']}'" in checks["queue"]["detail"]
    assert "consumed by" in checks["queue"]["detail"]
    assert "accepts the HTTP Basic credentials" in checks["tango"]["detail"]
    assert "Redis +" in checks["clock"]["detail"] or "Redis -" in checks["clock"]["detail"]
    assert "Tango" in checks["clock"]["detail"]
    settings = checks["settings"]["detail"]
    assert "TANGO_PLATFORM_KEY=***" in settings and PLATFORM_KEY not in settings
    assert f"RESEND_QUEUE={settings_env['RESEND_QUEUE']}" in settings


def test_refused_credentials_and_no_worker_fail_with_exit_1(
    settings_env: dict[str, str],
) -> None:
    code, report, _ = doctor({**settings_env, "TANGO_PLATFORM_KEY": "wrong-key"})

    assert code == 1 and report["ok"] is False
    checks = by_name(report)
    assert checks["tango"]["ok"] is False and "credentials refused" in checks["tango"]["detail"]
    assert checks["queue"]["ok"] is False and "no worker consumes it" in checks["queue"]["detail"]
    assert "wrong-key" not in json.dumps(report)
    assert checks["redis"]["ok"] is True


def test_an_evicting_redis_is_a_failed_check(
    settings_env: dict[str, str], evicting_redis: RedisServer
) -> None:
    """Given a Redis started with --maxmemory-policy allkeys-lru, doctor fails its eviction
    check (exit 1) and still checks everything else."""
    code, report, _ = doctor({**settings_env, "REDIS_URL": evicting_redis.url(0)})

    assert code == 1 and report["ok"] is False
    checks = by_name(report)
    assert checks["redis eviction"]["ok"] is False
    assert EVICTING_POLICY in checks["redis eviction"]["detail"]
    persistence = checks["redis persistence"]
    assert persistence["ok"] is True
    assert persistence["detail"].startswith("AOF on, appendfsync everysec")  # see test_redis_setups
    assert checks["tango"]["ok"] is True
    assert [check["name"] for check in report["checks"]] == NAMES


def test_an_unreachable_redis_exits_3(settings_env: dict[str, str]) -> None:
    code, report, _ = doctor(
        {**settings_env, "REDIS_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0"}
    )

    assert code == 3
    assert report["ok"] is False
    (check,) = report["checks"]
    assert check["name"] == "redis" and check["ok"] is False
    assert "does not answer" in check["detail"] and "s3cret" not in check["detail"]


def test_no_url_shows_its_user_password_or_query(redis_client: redis.Redis) -> None:
    """Given credentials inside TANGO_BASE_URL and RESULT_WEBHOOK_URL (user, password, and a
    token in the query), doctor's report (plain and --json) shows neither."""
    env = {
        "REDIS_URL": TEST_REDIS_URL,
        "TANGO_BASE_URL": f"http://user:pass-w0rd@127.0.0.1:{free_port()}/raas/v2",
        "TANGO_PLATFORM_NAME": "platform",
        "TANGO_PLATFORM_KEY": "platform-key",
        "RESULT_WEBHOOK_URL": "https://cb-user:hunter2@hooks.example.com/in?token=tok-123",
        "RESULT_WEBHOOK_SECRET": OTHER_SECRET,
    }
    _, report, _ = doctor(env, "--timeout", "0.1")
    plain = run_python(["-m", "worker", "doctor", "--timeout", "0.1"], env).stdout

    for text in (json.dumps(report), plain):
        for secret in ("pass-w0rd", "hunter2", "tok-123", "cb-user", "user:"):
            assert secret not in text, secret
    checks = by_name(report)
    assert "RESULT_WEBHOOK_URL=https://***@hooks.example.com/in?***" in checks["settings"]["detail"]
    assert checks["tango"]["detail"].startswith("http://***@127.0.0.1:")
