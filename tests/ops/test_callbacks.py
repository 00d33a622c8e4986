"""Outcome callbacks: signed webhooks to a local receiver (retried), and the in-process hook."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend
from worker.resend.callbacks import event_body, resend_finished
from worker.resend.producer import cancel_resend
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl
from worker.state.records import ResendRecord

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"outcome-callback-secret-0123456789").decode()
SENT_ORDER = "RA251125-6201-01"
CANCELLED_ORDER = "RA251125-6202-01"
UNKNOWN_ORDER = "RA251125-6299-01"
EMAIL = "pat.callback@example.com"
FIRST_BACKOFF_SECONDS = 2.0


@dataclass(frozen=True)
class Delivery:
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]
    body: bytes
    answered: int


class Receiver:
    """A local HTTP endpoint that answers 500 to the first POST and 200 to every later one."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = 500 if not receiver.deliveries else 200
                    receiver.deliveries.append(
                        Delivery(
                            arrived, {k.lower(): v for k, v in self.headers.items()}, body, status
                        )
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def callback_env(
    settings_env: dict[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Outcome callbacks on, for this process (the canceller) and its workers."""
    extra = {"RESULT_WEBHOOK_URL": receiver.url, "RESULT_WEBHOOK_SECRET": SECRET}
    apply_settings(extra, monkeypatch.setenv)
    return extra


@pytest.fixture
def hook_calls() -> Iterator[list[ResendRecord]]:
    """Records the in-process `resend_finished` hook sends in this process."""
    seen: list[ResendRecord] = []

    def receive(sender: Any = None, record: ResendRecord | None = None, **_: Any) -> None:
        assert record is not None
        seen.append(record)

    resend_finished.connect(receive, weak=False)
    yield seen
    resend_finished.disconnect(receive)


def test_outcomes_are_delivered_signed_and_retried(
    control: SandboxControl,
    start_worker: WorkerFactory,
    receiver: Receiver,
    callback_env: dict[str, str],
    hook_calls: list[ResendRecord],
) -> None:
    control.add_order(SENT_ORDER)
    control.add_order(CANCELLED_ORDER)
    # Cancelled in this process before any worker runs; a worker's scheduler delivers it.
    cancelled = enqueue_resend(CANCELLED_ORDER, new_email=EMAIL)
    assert cancel_resend(cancelled) == "cancelled"
    assert [(r.id, r.status.value) for r in hook_calls] == [(cancelled, "cancelled")]
    assert cancel_resend(cancelled) == "cancelled"
    assert len(hook_calls) == 1, "the hook fires once per outcome"

    start_worker(**callback_env)
    sent = enqueue_resend(SENT_ORDER, new_email=EMAIL, new_mobile="+14155550123")
    failed = enqueue_resend(UNKNOWN_ORDER, new_email=EMAIL)
    wait_for(lambda: finished([sent, failed]), timeout=15, what="sent and failed")
    assert len(hook_calls) == 1, "the worker's outcomes fire the hook in the worker only"

    expected = {sent: "sent", failed: "failed", cancelled: "cancelled"}

    def all_delivered() -> list[Delivery] | None:
        deliveries = receiver.snapshot()
        ok = {json.loads(d.body)["data"]["id"] for d in deliveries if d.answered == 200}
        return deliveries if ok == set(expected) else None

    deliveries = wait_for(all_delivered, timeout=20, what="every outcome delivered")
    webhook = Webhook(SECRET)
    events: dict[str, dict[str, Any]] = {}
    for delivery in deliveries:
        assert delivery.headers["content-type"] == "application/json"
        event = webhook.verify(delivery.body, delivery.headers)
        assert event == json.loads(delivery.body)
        request_id = event["data"]["id"]
        assert (
            event["id"]
            == delivery.headers["webhook-id"]
            == f"evt_{request_id}_{expected[request_id]}"
        )
        assert event["type"] == f"resend.{expected[request_id]}"
        assert event["data"]["status"] == expected[request_id]
        assert b"@" not in delivery.body and b"4155550123" not in delivery.body, "no contact data"
        events.setdefault(request_id, event)
    assert events[sent]["data"]["referenceOrderID"] == SENT_ORDER
    assert events[sent]["data"]["tango_request_ids"] and events[sent]["data"]["sent_at"]
    # One spelling of time everywhere, as the API and the CLI write it: UTC with `Z`.
    for event in events.values():
        times = [event["timestamp"], event["data"]["created_at"], event["data"]["sent_at"]]
        assert all(t is None or (t.endswith("Z") and "+00:00" not in t) for t in times), times
    assert events[failed]["data"]["error"]["i18n_key"] == "404.017"
    assert events[cancelled]["data"]["attempts"] == 0
    # Who asked, and who cancelled: the producer API without an origin is "python".
    assert events[sent]["data"]["origin"] == events[cancelled]["data"]["origin"] == "python"
    assert events[cancelled]["data"]["cancelled_by"] == "python"
    assert events[cancelled]["data"]["cancelled_at"] and not events[sent]["data"]["cancelled_at"]

    # The first delivery failed with 500; it came again with the same id, after the backoff.
    first, *rest = deliveries
    assert first.answered == 500
    assert len(deliveries) == 4 and all(d.answered == 200 for d in rest)
    (again,) = [d for d in rest if d.headers["webhook-id"] == first.headers["webhook-id"]]
    assert again.body == first.body, "the event is stable across retries"
    assert again.at - first.at >= FIRST_BACKOFF_SECONDS - 0.05
    assert again.at - first.at < FIRST_BACKOFF_SECONDS + 3.0

    runtime = current_runtime()

    def counted() -> dict[str, str] | None:
        metrics = runtime.redis.hgetall(runtime.keys.metrics)
        return metrics if metrics.get("callbacks_total|delivered") == "3" else None

    metrics = wait_for(counted, timeout=5, what="the delivered count")
    assert metrics["callbacks_total|retried"] == "1"
    assert "callbacks_total|abandoned" not in metrics
    assert runtime.redis.zcard(runtime.keys.callbacks_due) == 0, "nothing left owed"
    assert runtime.redis.hlen(runtime.keys.callback_attempts) == 0


def test_no_outbox_without_a_webhook_url(
    settings_env: dict[str, str], hook_calls: list[ResendRecord]
) -> None:
    request_id = enqueue_resend(CANCELLED_ORDER)
    assert cancel_resend(request_id) == "cancelled"
    runtime = current_runtime()
    assert runtime.redis.zcard(runtime.keys.callbacks_due) == 0
    assert [r.id for r in hook_calls] == [request_id], "the in-process hook fires regardless"


def test_a_failing_hook_receiver_never_fails_the_cancel(settings_env: dict[str, str]) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("receiver bug")

    resend_finished.connect(broken, weak=False)
    try:
        request_id = enqueue_resend(CANCELLED_ORDER)
        assert cancel_resend(request_id) == "cancelled"
    finally:
        resend_finished.disconnect(broken)


def test_a_cancelled_event_is_stamped_with_the_cancellation_time(
    settings_env: dict[str, str],
) -> None:
    request_id = enqueue_resend(CANCELLED_ORDER)
    queued = get_resend(request_id)
    assert queued is not None
    runtime = current_runtime()
    wait_for(lambda: runtime.clock.now() > queued.updated_at, timeout=2, what="Redis time to move")
    before_cancel = runtime.clock.now()
    assert cancel_resend(request_id) == "cancelled"
    record = get_resend(request_id)
    assert record is not None
    assert record.updated_at >= before_cancel
    stamp = event_body(record)["timestamp"]
    assert stamp.endswith("Z") and datetime.fromisoformat(stamp) == record.updated_at
