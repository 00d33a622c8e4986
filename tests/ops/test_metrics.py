"""Prometheus metrics after a known sequence of outcomes: the web app's /metrics and a
worker's METRICS_PORT, parsed with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.metrics import labelled, samples, scrape
from tests.support.processes import WorkerFactory, free_port
from tests.support.receiver import WEBHOOK_SECRET
from tests.support.records import finished
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.resend.callbacks import resend_finished
from worker.resend.producer import cancel_resend
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl
from worker.state.metrics import LATENCY_BUCKETS, SEND_DELAY_BUCKETS
from worker.state.records import RecordStore, ResendRecord
from worker.web.app import create_app

pytestmark = pytest.mark.integration

SENT = "RA251125-6001-01"  # asked for twice: the second coalesces
RETRIED = "RA251125-6002-01"  # 503, then 201
COOLDOWN = "RA251125-6003-01"  # resent in the portal first: 403.005, deferred, then 201
CANCELLED = "RA251125-6004-01"
UNKNOWN = "RA251125-6099-01"  # 404.017


@pytest.fixture
def web_client(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The web app in-process, on the workers' Redis and prefix."""
    apply_settings({"WEBHOOK_SECRET": WEBHOOK_SECRET}, monkeypatch.setenv)
    with TestClient(create_app()) as client:
        yield client


def test_metrics_after_a_known_sequence(
    control: SandboxControl, start_worker: WorkerFactory, web_client: TestClient
) -> None:
    for order in (SENT, RETRIED, COOLDOWN, CANCELLED):
        control.add_order(order)
    control.inject_fault(RETRIED, status=503)
    # Queued before any worker runs, so the duplicate and the cancel happen deterministically.
    first = enqueue_resend(SENT)
    assert enqueue_resend(SENT) == first
    to_cancel = enqueue_resend(CANCELLED)
    assert cancel_resend(to_cancel) == "cancelled"
    port = free_port()
    start_worker(METRICS_PORT=str(port))
    ids = [first, enqueue_resend(RETRIED), enqueue_resend(UNKNOWN)]
    control.portal_resend(COOLDOWN)
    ids.append(enqueue_resend(COOLDOWN))
    records = wait_for(lambda: finished(ids), timeout=20, what="every request to finish")
    assert [r.status.value for r in records] == ["sent", "sent", "failed", "sent"]

    response = web_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values, types = samples(response.text)

    assert labelled(values, "tango_resend_requests_total", "outcome") == {
        "accepted": 5.0,
        "coalesced": 1.0,
        "sent": 3.0,
        "failed": 1.0,
        "cancelled": 1.0,
    }
    assert labelled(values, "tango_resend_tango_calls_total", "status") == {
        "201": 3.0,
        "503": 1.0,
        "404": 1.0,
        "403": 1.0,
    }
    assert labelled(values, "tango_resend_deferrals_total", "reason") == {"cooldown": 1.0}
    assert labelled(values, "tango_resend_callbacks_total", "outcome") == {}

    for name, bounds, count in (
        ("tango_resend_tango_latency_seconds", LATENCY_BUCKETS, 6.0),
        ("tango_resend_send_delay_seconds", SEND_DELAY_BUCKETS, 3.0),
    ):
        assert types[name] == "histogram"
        assert values[(f"{name}_count", ())] == count
        assert values[(f"{name}_sum", ())] > 0
        buckets = labelled(values, f"{name}_bucket", "le")
        assert set(buckets) == {*(str(float(b)) for b in bounds), "+Inf"}
        cumulative = [buckets[str(float(b))] for b in bounds] + [buckets["+Inf"]]
        assert cumulative == sorted(cumulative), "buckets are cumulative"
        assert buckets["+Inf"] == count
    # Every local call answers well within 10 s; every send happened within a minute.
    assert labelled(values, "tango_resend_tango_latency_seconds_bucket", "le")["10.0"] == 6.0
    assert labelled(values, "tango_resend_send_delay_seconds_bucket", "le")["60.0"] == 3.0

    assert types["tango_resend_queue_depth"] == "gauge"
    assert types["tango_resend_parked"] == "gauge"
    assert values[("tango_resend_queue_depth", ())] == 0.0
    assert labelled(values, "tango_resend_parked", "state") == {
        "due": 0.0,
        "scheduled": 0.0,
        "waiting_for_turn": 0.0,
    }

    # The worker's own endpoint serves the same fleet-wide families and values.
    worker_text = wait_for(
        lambda: scrape(f"http://127.0.0.1:{port}/metrics"), timeout=10, what="METRICS_PORT"
    )
    worker_values, worker_types = samples(worker_text)
    assert worker_types == types
    assert worker_values == values


def test_metrics_of_an_empty_fleet(web_client: TestClient) -> None:
    values, types = samples(web_client.get("/metrics").text)
    assert {
        "tango_resend_requests",
        "tango_resend_deferrals",
        "tango_resend_tango_calls",
        "tango_resend_callbacks",
        "tango_resend_tango_latency_seconds",
        "tango_resend_token_calls",
        "tango_resend_token_latency_seconds",
        "tango_resend_redeliveries",
        "tango_resend_probes",
        "tango_resend_send_delay_seconds",
        "tango_resend_queue_depth",
        "tango_resend_parked",
        "tango_resend_oldest_due_overdue_seconds",
        "tango_resend_redis_eviction_unsafe",
        "tango_resend_redis_maxmemory_policy",
        "tango_resend_redis_up",
        "tango_resend_tango_up",
        "tango_resend_tango_outage",
        "tango_resend_waiting_on_outage",
    } == set(types)
    # Up, and nothing waits on an outage; Tango's last success is exported once one is known.
    assert values[("tango_resend_redis_up", ())] == 1.0
    assert values[("tango_resend_tango_up", ())] == 1.0
    assert set(labelled(values, "tango_resend_tango_outage", "reason").values()) == {0.0}
    assert set(labelled(values, "tango_resend_waiting_on_outage", "reason").values()) == {0.0}
    assert values[("tango_resend_oldest_due_overdue_seconds", ())] == 0.0
    assert labelled(values, "tango_resend_requests_total", "outcome") == {}
    assert values[("tango_resend_tango_latency_seconds_count", ())] == 0.0
    assert values[("tango_resend_queue_depth", ())] == 0.0
    # The tests' Redis does not evict (one that does: tests/ops/test_redis_eviction.py).
    assert values[("tango_resend_redis_eviction_unsafe", ())] == 0.0
    assert labelled(values, "tango_resend_redis_maxmemory_policy", "policy") == {"noeviction": 1.0}


def test_racing_cancellers_count_one_cancellation(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = enqueue_resend(CANCELLED)
    hooks: list[str] = []

    def hook(record: ResendRecord | None = None, **_: object) -> None:
        assert record is not None
        hooks.append(record.id)

    original = RecordStore._finish_script

    def rival_cancels_first(
        self: RecordStore, record: ResendRecord, *args: Any, **kwargs: Any
    ) -> str:
        # Another canceller (another process) wins between our read and our cancel script.
        monkeypatch.setattr(RecordStore, "_finish_script", original)
        assert cancel_resend(record.id) == "cancelled"
        return original(self, record, *args, **kwargs)

    monkeypatch.setattr(RecordStore, "_finish_script", rival_cancels_first)
    resend_finished.connect(hook, weak=False)
    try:
        assert cancel_resend(request_id) == "cancelled"
    finally:
        resend_finished.disconnect(hook)
    runtime = current_runtime()
    counted = runtime.redis.hget(runtime.keys.metrics, "requests_total|cancelled")
    assert hooks == [request_id], "the hook fires once"
    assert counted == "1"
