"""A Redis that may evict our data is named loudly: in the worker's and the receiver's logs at
start, in /healthz, and in the metrics (docs/guarantees.md, "Redis must not evict")."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.metrics import labelled, samples, scrape
from tests.support.processes import WebProcess, WorkerProcess, free_port
from tests.support.receiver import WEBHOOK_SECRET
from tests.support.redis_server import EVICTING_POLICY, RedisServer
from tests.support.settings import new_tag
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WARNING = f"maxmemory-policy is '{EVICTING_POLICY}', not 'noeviction'"


def test_an_evicting_redis_is_named_in_logs_healthz_and_metrics(
    evicting_redis: RedisServer, tmp_path: Path
) -> None:
    """Given a Redis with maxmemory-policy allkeys-lru, the worker and the receiver say so
    when they start, /healthz reports it (200, "degraded": Redis still answers), and both
    metrics endpoints carry the policy and an unsafe flag to alert on."""
    tag = new_tag()
    metrics_port = free_port()
    env = {
        "REDIS_URL": evicting_redis.url(0),
        "REDIS_KEY_PREFIX": f"evict-{tag}",
        "RESEND_QUEUE": f"evict-{tag}",
        "TANGO_BASE_URL": "http://127.0.0.1:9/raas/v2",  # never called: nothing is queued
        "TANGO_PLATFORM_NAME": "evict-platform",
        "TANGO_PLATFORM_KEY": "evict-key-Pw3",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
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
        assert (answer["status"], answer["redis_maxmemory_policy"]) == ("degraded", EVICTING_POLICY)
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
                EVICTING_POLICY: 1.0
            }
    finally:
        web.stop()
        worker.stop()
