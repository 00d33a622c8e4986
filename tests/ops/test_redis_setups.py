"""What `doctor` and the start-up log say a Redis can lose, for each set-up of the table in
docs/guarantees.md ("Redis set-ups"): a single Redis without AOF, with AOF `everysec`, with AOF
`always`, and a primary with a replica under Sentinel that refuses writes without one
(`min-replicas-to-write`). Real redis-server processes of the test's own."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import CliRun
from tests.support.processes import StartedProcesses
from tests.support.redis_server import RedisServer
from tests.support.redis_topology import SentinelTopology
from tests.support.sandbox import SandboxServer, sandbox_settings
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from worker.state.redis_durability import log_durability

pytestmark = pytest.mark.integration

LOSES_WRITES = "REDIS MAY LOSE ACCEPTED REQUESTS"

SINGLE_SETUPS = {
    "no-aof": (
        ("--appendonly", "no"),
        "warning: AOF off and no RDB snapshots: a Redis restart loses every record",
    ),
    "aof-everysec": (
        ("--appendfsync", "everysec"),
        "AOF on, appendfsync everysec: a host crash can lose about the last second of writes",
    ),
    "aof-always": (
        ("--appendfsync", "always"),
        "AOF on, appendfsync always: every write is on disk before Redis answers",
    ),
}


def persistence_check(run_cli: CliRun) -> dict[str, Any]:
    result = run_cli("doctor", "--json")
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    return dict(checks["redis persistence"])


@pytest.fixture
def single(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RedisServer, str]]:
    extra_args, expected = SINGLE_SETUPS[request.param]
    server = RedisServer(tmp_path / "redis", extra_args=extra_args).start()
    yield server, expected
    server.stop()


@pytest.mark.parametrize("single", list(SINGLE_SETUPS), indirect=True)
def test_doctor_and_the_start_up_log_name_a_single_redis_persistence(
    single: tuple[RedisServer, str],
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    run_cli: CliRun,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, expected = single
    apply_settings({**settings_env, "REDIS_URL": server.url(0)}, monkeypatch.setenv)

    check = persistence_check(run_cli)
    assert check["ok"] is True  # a warning, not a failure: development Redis is fine
    assert check["detail"].startswith(expected), check
    assert "no replica connected" in check["detail"]
    assert "min-replicas-to-write 0 (writes never wait for a replica)" in check["detail"]

    with caplog.at_level(logging.INFO, logger="tango_resend.redis"):
        durability = log_durability(server.client())
    assert durability is not None
    (record,) = [r for r in caplog.records if r.name == "tango_resend.redis"]
    assert expected.removeprefix("warning: ") in record.getMessage()
    assert (record.levelno == logging.WARNING) is durability.weak
    assert (LOSES_WRITES in record.getMessage()) is expected.startswith("warning")


def test_a_worker_on_a_redis_without_aof_warns_at_start(
    tmp_path: Path, sandbox: SandboxServer, processes: StartedProcesses
) -> None:
    server = RedisServer(tmp_path / "redis", extra_args=("--appendonly", "no")).start()
    try:
        env = sandbox_settings(server.url(0), sandbox, prefix="noaof", LOG_LEVEL="INFO")
        worker = processes.worker(env, "noaof1", concurrency=1)
        wait_for(lambda: LOSES_WRITES in worker.log(), timeout=15, what="the start-up warning")
        line = next(line for line in worker.log().splitlines() if LOSES_WRITES in line)
        assert "WARNING" in line and "AOF off" in line and "docs/guarantees.md" in line
    finally:
        server.stop()


def test_doctor_names_the_replica_and_min_replicas_to_write_under_sentinel(
    tmp_path: Path,
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    run_cli: CliRun,
) -> None:
    with SentinelTopology(
        tmp_path / "ha",
        appendfsync="everysec",
        data_node_config=("min-replicas-to-write 1", "min-replicas-max-lag 10"),
    ) as ha:
        apply_settings({**settings_env, **ha.settings(0)}, monkeypatch.setenv)
        detail = persistence_check(run_cli)["detail"]
    assert detail.startswith("AOF on, appendfsync everysec")
    assert "1 replica(s) connected: a failover can lose the writes they had not received" in detail
    assert (
        "min-replicas-to-write 1: writes are refused while fewer than 1 replica(s) lagging at "
        "most 10 s are in sync"
    ) in detail
