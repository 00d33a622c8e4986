"""tango-resend on production Redis as an operator sets it up, every command a real process:

- a managed-style Redis that speaks only TLS, its certificate signed by a private CA, with an
  ACL user and the `default` user off (`rediss://user:password@...`, REDIS_TLS_CA_FILE);
- a primary, a replica and three sentinels (`sentinel://...;sentinel://.../db`), the data
  nodes and the sentinels each with a password; `doctor` and `enqueue` before and after the
  primary is crashed with `DEBUG SEGFAULT`, with the same worker still running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import StartedProcesses, run_python
from tests.support.redis_topology import SentinelTopology, TlsRedis
from tests.support.sandbox import SandboxServer, sandbox_settings
from tests.support.waiting import wait_for
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

DATA_PASSWORD = "data-nodes-Pw-7731"
SENTINEL_PASSWORD = "sentinel-Pw-4412"


def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = run_python(["-m", "worker", *args], env)
    return done.returncode, done.stdout, done.stderr


def doctor_checks(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]], str]:
    code, out, err = cli(env, "doctor", "--json")
    report = json.loads(out)
    return code, {check["name"]: check for check in report["checks"]}, out + err


def enqueue_and_wait_sent(env: dict[str, str], order: str, etid: str) -> str:
    """`tango-resend enqueue ORDER` in a process of its own, then `status` until sent."""
    code, out, err = cli(env, "enqueue", order, "--etid", etid)
    assert code == 0, (out, err)
    request_id = out.strip().splitlines()[-1]

    def sent() -> bool:
        status_code, status_out, _ = cli(env, "status", request_id, "--json")
        return status_code == 0 and json.loads(status_out)["status"] == "sent"

    wait_for(sent, timeout=60, interval=0.5, what=f"{request_id} sent")
    return request_id


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    with TlsRedis(tmp_path / "tls") as server:
        yield server


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[SentinelTopology]:
    with SentinelTopology(
        tmp_path / "ha", password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    ) as topology:
        yield topology


def test_rediss_with_an_acl_user_runs_worker_cli_and_doctor(
    tls_redis: TlsRedis,
    sandbox: SandboxServer,
    control: SandboxControl,
    processes: StartedProcesses,
) -> None:
    order = "RA251206-2321-01"
    control.add_order(order)
    env = sandbox_settings(
        tls_redis.url(0), sandbox, prefix="tls", REDIS_TLS_CA_FILE=str(tls_redis.ca_file)
    )
    worker = processes.worker(env, "tls1", concurrency=2)

    enqueue_and_wait_sent(env, order, "E000001")
    # The broker's scheme shows TLS; the log's redaction hides the ACL user and password.
    assert "Connected to rediss://***@127.0.0.1" in worker.log()
    assert "tango:" not in worker.log().split("Connected to", 1)[1].split("\n", 1)[0]

    code, checks, output = doctor_checks(env)
    assert checks["redis"]["ok"] is True, checks["redis"]
    detail = checks["redis"]["detail"]
    assert f"TLS, certificate verified against {tls_redis.ca_file}" in detail
    assert "ACL user 'tango'" in detail
    assert "consumed by tls1@" in checks["queue"]["detail"]
    assert tls_redis.password not in output
    assert code == 0, checks


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"REDIS_TLS_CA_FILE": ""}, "certificate verify failed"),  # the system's CAs
        ({"REDIS_URL": "wrong-password"}, "invalid username-password pair"),
        ({"REDIS_URL": "no-user"}, "authentication required"),
    ],
    ids=["unknown-ca", "wrong-password", "default-user-off"],
)
def test_a_tls_redis_that_refuses_us_is_named_with_exit_3(
    tls_redis: TlsRedis, sandbox: SandboxServer, change: dict[str, str], expected: str
) -> None:
    env = sandbox_settings(
        tls_redis.url(0), sandbox, prefix="tls", REDIS_TLS_CA_FILE=str(tls_redis.ca_file)
    )
    if change.get("REDIS_URL") == "wrong-password":
        change = {"REDIS_URL": tls_redis.url(0).replace(tls_redis.password, "not-it-9")}
    elif change.get("REDIS_URL") == "no-user":
        change = {"REDIS_URL": tls_redis.url(0, user=False)}
    code, out, err = cli({**env, **change}, "doctor", "--json")
    assert code == 3, (out, err)
    assert expected.lower() in (out + err).lower()
    assert tls_redis.password not in out + err


def test_sentinel_cli_and_doctor_follow_a_failover_with_the_same_worker(
    ha: SentinelTopology,
    sandbox: SandboxServer,
    control: SandboxControl,
    processes: StartedProcesses,
) -> None:
    orders = ["RA251206-2331-01", "RA251206-2331-02"]
    for order in orders:
        control.add_order(order)
    env = sandbox_settings(
        ha.url(0),
        sandbox,
        prefix="ha",
        REDIS_SENTINEL_MASTER=ha.master_name,
        REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
    )
    worker = processes.worker(env, "ha1", concurrency=2)

    enqueue_and_wait_sent(env, orders[0], "E000001")
    old = ha.primary()
    code, checks, output = doctor_checks(env)
    assert code == 0, checks
    assert f"primary 127.0.0.1:{old.port} named by Sentinel" in checks["redis"]["detail"]
    assert "1 replica(s) connected" in checks["redis persistence"]["detail"]
    assert DATA_PASSWORD not in output and SENTINEL_PASSWORD not in output

    ha.kill_primary("segfault")
    new = ha.wait_for_promotion(old)

    # A new process finds the new primary; the worker that was running goes on.
    enqueue_and_wait_sent(env, orders[1], "E000002")
    code, checks, _ = doctor_checks(env)
    assert checks["redis"]["ok"] is True
    assert f"primary 127.0.0.1:{new.port} named by Sentinel" in checks["redis"]["detail"]
    assert "no replica connected" in checks["redis persistence"]["detail"]
    assert checks["queue"]["ok"] is True, checks["queue"]
    assert worker.process.poll() is None

    # The old primary comes back as a replica of the new one.
    ha.restart(old)
    wait_for(lambda: old.role() == "slave", timeout=30, what="the old primary to rejoin")


def test_a_wrong_sentinel_password_is_named_with_exit_3(
    ha: SentinelTopology, sandbox: SandboxServer
) -> None:
    env = sandbox_settings(
        ha.url(0),
        sandbox,
        prefix="ha",
        REDIS_SENTINEL_MASTER=ha.master_name,
        REDIS_SENTINEL_PASSWORD="not-the-sentinels-password",
    )
    code, out, err = cli(env, "doctor", "--json")
    assert code == 3, (out, err)
    assert "mymaster" in out + err
    assert "not-the-sentinels-password" not in out + err
