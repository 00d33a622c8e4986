"""An outcome callback says who asked, who asked for a retry and who cancelled
(`worker.resend.callbacks.event_body`), and never the recipient's contact data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.resend.callbacks import event_body
from worker.state.record_model import ResendRecord, ResendStatus

T0 = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)


def test_the_callback_names_the_origin_and_the_canceller() -> None:
    record = ResendRecord(
        id="0123456789ab.RA251206-1-1",
        reference_order_id="RA251206-1-1",
        request={"newEmail": "pat@example.com"},
        status=ResendStatus.CANCELLED,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=5),
        origin="retry of 0000aaaa1111.RA251206-1-1",
        requested_by="api alice",
        cancelled_by="console bob",
        cancelled_at=T0 + timedelta(seconds=5),
    )
    data = event_body(record)["data"]
    assert data["origin"] == "retry of 0000aaaa1111.RA251206-1-1"
    assert data["requested_by"] == "api alice"
    assert (data["cancelled_by"], data["cancelled_at"]) == (
        "console bob",
        "2026-12-06T00:30:05Z",  # one spelling of time: UTC with Z
    )
    assert data["forced"] is False
    assert "pat@example.com" not in str(event_body(record))
