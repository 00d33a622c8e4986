"""The console's warning before a resend matters: when, and to whom, an order was last resent.

Shown on the resend form and an order's page whenever the order was sent in the last day,
whatever RESEND_RECENT_SECONDS says, so an agent sees "last resent 3 min ago to
p***@example.com" before asking again.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.core.redaction import mask_email, mask_phone
from worker.runtime import Runtime
from worker.state.queries import order_history
from worker.state.records import ResendRecord, ResendStatus

WARN_WITHIN_SECONDS = 24 * 3600


@dataclass(frozen=True)
class LastResent:
    """The order's latest sent request, for the warning line."""

    record: ResendRecord
    ago: str  # "3 min ago"
    recipient: str  # masked: "p***@example.com", "+1******0123", "the order's own recipient"

    @property
    def line(self) -> str:
        return f"last resent {self.ago} to {self.recipient}"


def last_resent(runtime: Runtime, order: str | None) -> LastResent | None:
    """The order's latest resend within a day (Redis's clock), or None."""
    if not order:
        return None
    sent = [
        record
        for record in order_history(runtime, order)
        if record.status is ResendStatus.SENT and record.sent_at is not None
    ]
    if not sent:
        return None
    latest = max(sent, key=lambda record: record.sent_at or record.created_at)
    assert latest.sent_at is not None
    elapsed = (runtime.clock.now() - latest.sent_at).total_seconds()
    if elapsed > WARN_WITHIN_SECONDS:
        return None
    return LastResent(latest, ago(elapsed), masked_recipient(latest.request))


def ago(seconds: float) -> str:
    """`42 s ago`, `3 min ago`, `5 h ago`: as a person would say it."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def masked_recipient(fields: dict[str, str]) -> str:
    """Whom a request's resend reached, contact data masked."""
    if fields.get("newEmail"):
        return mask_email(fields["newEmail"])
    if fields.get("newMobile"):
        return mask_phone(fields["newMobile"])
    method = fields.get("newDeliveryMethod")
    return f"the order's own recipient (by {method})" if method else "the order's own recipient"
