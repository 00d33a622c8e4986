"""Every Redis key tango-resend uses, built in one place under one configurable prefix."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key names under `prefix`. Each key except the broker's own carries a TTL where written."""

    prefix: str

    def order_window(self, reference_order_id: str) -> str:
        """The per-order lock whose expiry is Tango's resend window; value = owning request id."""
        return f"{self.prefix}:window:{reference_order_id}"

    def record(self, request_id: str) -> str:
        """A request's record (JSON)."""
        return f"{self.prefix}:request:{request_id}"

    def idempotency(self, idempotency_key: str) -> str:
        # Hashed so that a caller's key of any length or alphabet makes a well-formed key name.
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return f"{self.prefix}:idempotency:{digest}"

    def order_requests(self, reference_order_id: str) -> str:
        """Sorted set of an order's request ids by enqueue time (for history listings)."""
        return f"{self.prefix}:order:{reference_order_id}:requests"

    @property
    def due_index(self) -> str:
        """Sorted set of unfinished request ids by when their task should next run.

        Lets a sweeper find requests whose task message was lost (see `worker.sweeper`).
        Entries leave it when their request finishes; it holds only live work, so no TTL.
        """
        return f"{self.prefix}:due"

    @property
    def oauth_token(self) -> str:
        return f"{self.prefix}:oauth:token"

    @property
    def oauth_fetch_lock(self) -> str:
        return f"{self.prefix}:oauth:fetch-lock"
