"""A Redis that may evict our data is named loudly: in the worker's and the receiver's logs at
start, in /healthz, and in the metrics (docs/guarantees.md, "Redis must not evict")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.chaos.system import RedisServer
from tests.integration.harness import WebProcess, WorkerProcess, free_port, wait_for
from tests.ops.test_metrics import labelled, samples
from tests.web.conftest import SECRET

pytestmark = pytest.mark.integration

POLICY = "allkeys-lru"
WARNING = f"maxmemory-policy is '{POLICY}', not 'noeviction'"


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own that evicts under memory pressure."""
    server = RedisServer(tmp_path / "redis", extra_args=("--maxmemory-policy", POLICY)).start()
    yield server
    server.stop()


def scrape(url: str) -> str | None:
    try:
        answer = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return answer.text if answer.status_code == 200 else None


def test_an_evicting_redis_is_named_in_logs_healthz_and_metrics(
    evicting_redis: RedisServer, tmp_path: Path
) -> None:
    """Given a Redis with maxmemory-policy allkeys-lru, the worker and the receiver say so
    when they start, /healthz reports it (200, "degraded": Redis still answers), and both
    metrics endpoints carry the policy and an unsafe flag to alert on."""
    tag = uuid.uuid4().hex[:8]
    metrics_port = free_port()
    env = {
        "REDIS_URL": evicting_redis.url(0),
        "REDIS_KEY_PREFIX": f"evict-{tag}",
        "RESEND_QUEUE": f"evict-{tag}",
        "TANGO_BASE_URL": "http://127.0.0.1:9/raas/v2",  # never called: nothing is queued
        "TANGO_PLATFORM_NAME": "evict-platform",
        "TANGO_PLATFORM_KEY": "evict-key-Pw3",
        "WEBHOOK_SECRET": SECRET,
        "METRICS_PORT": str(metrics_port),
        "LOG_LEVEL": "INFO",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    web = WebProcess(env, tmp_path / "web.log")
    try:
        worker.wait_ready()
        web.wait_ready()

        wait_for(lambda: WARNING in worker.log(), timeout=10, what="the worker's warning")
        assert WARNING in web.log()  # logged while the app was built, before it answered
        for log in (worker.log(), web.log()):
            line = next(line for line in log.splitlines() if WARNING in line)
            assert "WARNING" in line and "REDIS MAY DROP OUR DATA" in line

        health = requests.get(f"{web.url}/healthz", timeout=5)
        assert health.status_code == 200
        answer = health.json()
        assert (answer["status"], answer["redis_maxmemory_policy"]) == ("degraded", POLICY)
        assert len(answer["warnings"]) == 1 and WARNING in answer["warnings"][0]

        web_metrics = wait_for(lambda: scrape(f"{web.url}/metrics"), timeout=10, what="/metrics")
        worker_metrics = wait_for(
            lambda: scrape(f"http://127.0.0.1:{metrics_port}/metrics"),
            timeout=10,
            what="the worker's METRICS_PORT",
        )
        for text in (web_metrics, worker_metrics):
            values, types = samples(text)
            assert types["tango_resend_redis_eviction_unsafe"] == "gauge"
            assert values[("tango_resend_redis_eviction_unsafe", ())] == 1.0
            assert labelled(values, "tango_resend_redis_maxmemory_policy", "policy") == {
                POLICY: 1.0
            }
    finally:
        web.stop()
        worker.stop()
