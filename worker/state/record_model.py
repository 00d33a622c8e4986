"""A resend request as the code handles it: its status, its attempts, and everything else its
record keeps (worker/state/record_codec.py says how it is stored)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class ResendStatus(StrEnum):
    """A request's state, as every interface shows it; a `str` equal to its word (README,
    "States"). `in_flight` is only ever shown (`worker/state/queries.py`, `shown_records`):
    the stored status of a request whose call is under way stays what it was."""

    QUEUED = "queued"  # waiting for a worker to take it
    DEFERRED = "deferred"  # waiting: its turn, its order's window, the rate limit (`reason`)
    IN_FLIGHT = "in_flight"  # its call to Tango is under way (too late to cancel)
    RETRYING = "retrying"  # waiting out the backoff after a transient failure
    # Tango is down for the whole fleet (unreachable, our credentials refused) or answered
    # 503/429: no call reached it, and the request waits (its reason says on what) until
    # TANGO_OUTAGE_PATIENCE_SECONDS after its first try.
    WAITING = "waiting"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Sent, failed or cancelled: nothing more will happen to the request."""
        return self in (ResendStatus.SENT, ResendStatus.FAILED, ResendStatus.CANCELLED)

    @property
    def is_final(self) -> bool:
        """The same as `final`."""
        return self.final


class AttemptOutcome(StrEnum):
    """What became of one call to Tango, as a line of the attempt log (stored in the record's
    JSON, shown by the CLI and the console: the values are a public contract)."""

    SENT = "sent"  # Tango resent (its 201)
    CONFIRMED = "confirmed"  # a probe's cooldown answer proved an earlier call resent
    DEFERRED = "deferred"  # Tango's cooldown answer: try again after its window
    RETRYING = "retrying"  # a transient failure
    FAILED = "failed"  # a final failure
    UNAUTHORIZED = "unauthorized"  # a 401 answered by renewing the shared token
    INTERRUPTED = "interrupted"  # its worker died mid-call: nobody stored the outcome


ConfirmedBy = Literal["cooldown", "refusal"]
"""How a `sent` was known other than by Tango's 201, from Tango's cooldown answer to a probe:
"cooldown" when its last-sent time showed the resend came after our call started, "refusal"
when the refusal itself proved it (RESEND_EXCLUSIVE, and the order's call marker clear)."""


class AttemptEntry(BaseModel):
    """One call to Tango made for this request."""

    at: datetime
    outcome: AttemptOutcome
    status: int | None = None
    i18n_key: str | None = None
    tango_request_id: str | None = None
    # A probe: the prompt second call that asks Tango whether an ambiguous call acted.
    probe: bool = False


class ResendRecord(BaseModel):
    """A resend request and everything that has happened to it."""

    id: str
    reference_order_id: str
    request: dict[str, str] = Field(default_factory=dict)
    status: ResendStatus = ResendStatus.QUEUED
    attempts: int = 0
    transient_failures: int = 0
    # Deferrals for Tango's cooldown answer, and for the order's window held by another of
    # its requests. The second keeps its old name, `lock_deferrals`: it is a key of the
    # record's JSON (stored, and in every API), so code reads it as `window_deferrals`.
    cooldown_deferrals: int = 0
    lock_deferrals: int = 0
    merges: int = 0
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    response: dict[str, Any] | None = None
    tango_request_ids: list[str] = Field(default_factory=list)
    attempt_log: list[AttemptEntry] = Field(default_factory=list)
    retry_of: str | None = None
    # How `sent` was known: None for Tango's 201; "cooldown" when the last-sent time in Tango's
    # cooldown answer to a probe proved that an earlier call whose answer we never had had
    # resent; "refusal" when the refusal itself proved it (a sole sender, RESEND_EXCLUSIVE).
    confirmed_by: ConfirmedBy | None = None
    # The start (Redis's clock, epoch seconds) of the earliest call whose outcome is unknown
    # (a timeout, a reset, a 502/504, a worker killed mid-call) and not yet settled by a probe.
    unresolved_call_started_at: float | None = None
    # Who asked for it, in one structured field: "webhook <webhook-id>", "api <token name>",
    # "console <agent>", "cli <user@host>", "bulk <file>:<row>", "recovery <range>",
    # "retry of <id>", "python <origin given>". None for requests stored before it existed.
    origin: str | None = None
    # Who asked for a retry ("retry of <id>" says what it retries, this says who), in the
    # words of `origin`: "api ops-bot", "cli alice@host", "console ops-bot".
    requested_by: str | None = None
    # Sent although the recent-resend guard would have answered an earlier request.
    forced: bool = False
    # Who cancelled it and when (a cancel from anywhere but the producer API says who).
    cancelled_by: str | None = None
    cancelled_at: datetime | None = None
    # When a run first took the request to call Tango (Redis's clock, epoch seconds): calls
    # that never reached Tango are retried until TANGO_OUTAGE_PATIENCE_SECONDS after it.
    first_tried_at: float | None = None
    # Calls in a row that never reached Tango (they use up no retries; they grow the backoff).
    outage_failures: int = 0

    @property
    def window_deferrals(self) -> int:
        """How often the request waited because another request held its order's window."""
        return self.lock_deferrals

    @window_deferrals.setter
    def window_deferrals(self, count: int) -> None:
        self.lock_deferrals = count

    def fingerprint(self) -> str:
        """Identifies "the same request": the order and exactly the same fields."""
        return request_fingerprint(self.reference_order_id, self.request)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def recipient_key(fields: dict[str, str]) -> str:
    """Who a request's resend reaches: its email (any case), mobile and delivery method, an
    empty one meaning the order's own. Two requests with the same key are "the same
    recipient" for the recent-resend guard (create.lua's `recipient_of` builds the same text
    from a stored request); the template (`newEtid`) does not change who receives it."""
    # ASCII case only, as Lua's string.lower and string.upper fold it.
    return "\n".join(
        (
            fields.get("newEmail", "").translate(_ASCII_LOWER),
            fields.get("newMobile", ""),
            fields.get("newDeliveryMethod", "").translate(_ASCII_UPPER),
        )
    )


def request_fingerprint(reference_order_id: str, fields: dict[str, str]) -> str:
    canonical = json.dumps([reference_order_id, fields], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def new_request_id(reference_order_id: str) -> str:
    """A new request's id: 12 random hex digits, a dot, its order
    (`3f9a0c1b2d4e.RA251125-1001-12`). 48 random bits: the id only has to be unique among the
    requests of one order, and every index holds it, so each character counts a million
    times over. Random first, so a few leading characters tell requests apart (the CLI takes
    a unique prefix of 8); the order after, so a request's order is known from its id alone,
    even once its record is gone: repairing the order's queue then needs no index of its own.
    Ids of other shapes (earlier versions made UUIDs) stay valid."""
    return f"{secrets.token_hex(6)}.{reference_order_id}"


# A request id as `new_request_id` makes them, or a UUID as earlier versions did: checked
# before an id from a URL is used at all (looked up, logged, put in a page or a link).
REQUEST_ID = re.compile(
    r"[0-9a-f]{12}\.RA[0-9]{6}-[0-9]{1,10}-[0-9]{1,10}"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def is_request_id(text: str) -> bool:
    """Whether `text` has the shape of a request id (of this version or an earlier one)."""
    return REQUEST_ID.fullmatch(text) is not None


def order_in_request_id(request_id: str) -> str | None:
    """The order a `new_request_id` names, or None for an id of another shape."""
    random_part, dot, order = request_id.partition(".")
    return order if dot and len(random_part) == 12 and order.startswith("RA") else None
