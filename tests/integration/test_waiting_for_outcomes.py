"""`wait_for_outcome` and its coroutine, against a real worker and the sandbox."""

from __future__ import annotations

import asyncio
import time

import pytest

from tango_resend import (
    ResendStatus,
    UnknownRequest,
    cancel_resend,
    enqueue_resend,
    wait_for_outcome,
    wait_for_outcome_async,
)
from tests.support.processes import WorkerFactory
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

ORDER = "RA251125-2201-01"


def test_waiting_returns_the_final_record(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Given a worker, when a request is waited for, then its sent record comes back, and
    the coroutine gives the same for an unknown order's failed request."""
    control.add_order(ORDER)
    start_worker()

    sent = wait_for_outcome(enqueue_resend(ORDER), timeout=20)
    assert sent.status is ResendStatus.SENT and sent.status.final and sent.sent_at is not None

    failed = asyncio.run(wait_for_outcome_async(enqueue_resend("RA251125-2201-99"), timeout=20))
    assert failed.status is ResendStatus.FAILED and failed.status.final


def test_waiting_times_out_and_names_the_request(settings_env: dict[str, str]) -> None:
    """Given no worker, the wait ends with TimeoutError about when asked (never early), and
    the request goes on: it can still be cancelled."""
    request_id = enqueue_resend(ORDER)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=request_id):
        wait_for_outcome(request_id, timeout=0.6)
    assert 0.6 <= time.monotonic() - started < 3

    with pytest.raises(TimeoutError):
        asyncio.run(wait_for_outcome_async(request_id, timeout=0.3))
    assert cancel_resend(request_id) == "cancelled"
    assert wait_for_outcome(request_id, timeout=0).status is ResendStatus.CANCELLED


def test_waiting_for_an_unknown_request_says_so(settings_env: dict[str, str]) -> None:
    with pytest.raises(UnknownRequest):
        wait_for_outcome("0123456789ab.RA251125-2201-01", timeout=5)
    with pytest.raises(LookupError):
        asyncio.run(wait_for_outcome_async("no-such-request", timeout=5))


def test_every_status_says_whether_it_is_final() -> None:
    final = {status.value for status in ResendStatus if status.final}
    assert final == {"sent", "failed", "cancelled"}
    assert all(status.is_final == status.final for status in ResendStatus)
