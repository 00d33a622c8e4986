"""Every Redis key tango-resend uses, built in one place under one configurable prefix."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key names under `prefix`. Each key except the broker's own carries a TTL where written."""

    prefix: str

    def order_window(self, reference_order_id: str) -> str:
        """The order's window: a key whose expiry is the end of our per-order resend window
        (Tango's 30-second rule); value = the request that holds it."""
        return f"{self.prefix}:window:{reference_order_id}"

    def record(self, request_id: str) -> str:
        """A request's record (JSON)."""
        return f"{self.prefix}:request:{request_id}"

    def idempotency(self, idempotency_key: str) -> str:
        # Hashed so that a caller's key of any length or alphabet makes a well-formed key name.
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return f"{self.prefix}:idempotency:{digest}"

    def order_requests(self, reference_order_id: str) -> str:
        """Sorted set of an order's request ids by enqueue time, as earlier versions kept it for
        listings: read (with `order_fifo`), never written."""
        return f"{self.prefix}:order:{reference_order_id}:requests"

    def order_fifo(self, reference_order_id: str) -> str:
        """Sorted set of an order's requests: a waiting one scores its place in the queue (the
        enqueue sequence, > 0: the lowest goes next), a finished one minus its creation time
        (epoch seconds, < 0), kept for listings until the record TTL (lib/order_queue.lua)."""
        return f"{self.prefix}:order:{reference_order_id}:fifo"

    def order_pending(self, reference_order_id: str) -> str:
        """Hash of an order's unfinished requests by fingerprint, as earlier versions kept it
        for coalescing duplicates. Read and cleaned up, never written: a record now keeps its
        own fingerprint (`fp`), compared across the order's FIFO; gone one record TTL after
        an upgrade."""
        return f"{self.prefix}:order:{reference_order_id}:pending"

    def rate_reservation(self, request_id: str) -> str:
        """The rate-limit slot (epoch ms) reserved for a request's next call, as earlier
        versions kept it (one key per request). Never written now (`rate_reservations`);
        left to expire within the hour after an upgrade."""
        return f"{self.prefix}:rate:reservation:{request_id}"

    @property
    def rate_reservations(self) -> str:
        """Reserved rate-limit slots: sorted set, request id scored by its slot (epoch ms).
        One set, so that a probe can move every reservation back one slot and go first."""
        return f"{self.prefix}:rate:reservations"

    def call_marker(self, reference_order_id: str) -> str:
        """Hash of the order's calls to Tango: `<request id>@<gate ms>` -> the latest moment
        (Redis ms) the call could have acted, plus `run_id`, the Redis that wrote it. Written
        at every gate and every answer, never released (lua/lib/call_marker.lua)."""
        return f"{self.prefix}:order:{reference_order_id}:calls"

    @property
    def call_marker_epoch(self) -> str:
        """Hash {run_id, since}: since when (Redis ms) this Redis has held every call marker;
        `since` moves to now whenever the Redis answering is not the one that wrote it."""
        return f"{self.prefix}:calls:epoch"

    @property
    def requests_by_time(self) -> str:
        """Every request by creation time, for listings; trimmed to the record TTL."""
        return f"{self.prefix}:requests"

    @property
    def rate_limiter(self) -> str:
        """The fleet-wide limiter's theoretical arrival time (GCRA), epoch ms."""
        return f"{self.prefix}:rate:tat"

    @property
    def rate_recent_calls(self) -> str:
        """When the fleet's recent calls to Tango started (sorted set, epoch ms)."""
        return f"{self.prefix}:rate:recent"

    @property
    def rate_pause(self) -> str:
        """Present while the fleet holds back after a 429 (expires when the pause ends)."""
        return f"{self.prefix}:rate:pause"

    @property
    def sequence(self) -> str:
        """A counter that orders requests of one order as they were enqueued."""
        return f"{self.prefix}:sequence"

    @property
    def scheduler_wakeup(self) -> str:
        """Pub/sub channel: something was parked that is due soon."""
        return f"{self.prefix}:scheduler:wakeup"

    @property
    def due_index(self) -> str:
        """Sorted set of unfinished request ids by when a task should next run for them.

        Parked requests sit at their due time and the scheduler releases them; requests with a
        task message in flight sit at its expected run time plus a lease, so a lost message is
        released again (see `worker.queueing.scheduler`). Entries leave when their request
        finishes; it holds only live work, so it has no TTL.
        """
        return f"{self.prefix}:due"

    @property
    def dispatched(self) -> str:
        """Hash: request id -> dispatch number, for requests whose task message was published
        and not yet taken by a worker. Lets the scheduler tell a message still waiting in the
        broker queue (leave it) from one that was lost (release the request again)."""
        return f"{self.prefix}:dispatched"

    @property
    def dispatch_sequence(self) -> str:
        """Counter numbering task messages as they are published (dispatch numbers)."""
        return f"{self.prefix}:dispatch:sequence"

    @property
    def dispatch_consumed(self) -> str:
        """The highest dispatch number a worker has taken: the broker queue's FIFO progress."""
        return f"{self.prefix}:dispatch:consumed"

    @property
    def unfinished_orders(self) -> str:
        """Hash: unfinished request id -> its order, as earlier versions kept it to repair an
        order's queue when a request's record had gone; read, never written (a request's id
        now names its order: `record_model.new_request_id`)."""
        return f"{self.prefix}:unfinished:orders"

    def scheduler_claim(self, claim_id: str) -> str:
        """A scheduler pass's claimed ids, kept a minute so a replayed claim (a lost reply
        retried by redis-py) returns the same ids instead of stranding them."""
        return f"{self.prefix}:scheduler:claim:{claim_id}"

    @property
    def replication_barrier(self) -> str:
        """A key written only so that WAIT after it confirms every write before it
        (`worker/state/durability.py`); expires after a minute."""
        return f"{self.prefix}:durability:barrier"

    @property
    def metrics(self) -> str:
        """The fleet's Prometheus counters and histogram buckets (a hash)."""
        return f"{self.prefix}:metrics"

    @property
    def callbacks_due(self) -> str:
        """Outcome callbacks to deliver, by when to try next (the outbox)."""
        return f"{self.prefix}:callbacks:due"

    @property
    def callback_attempts(self) -> str:
        """Delivery attempts so far, by request id (removed with the outbox entry)."""
        return f"{self.prefix}:callbacks:attempts"

    @property
    def callback_claims(self) -> str:
        """Hash: outbox entry -> the token of its latest delivery claim (a fencing token, as
        for resends: of two deliveries alive at once, only the newest may re-schedule it).
        Removed with the outbox entry."""
        return f"{self.prefix}:callbacks:claims"

    @property
    def oauth_token(self) -> str:
        return f"{self.prefix}:oauth:token"

    @property
    def oauth_fetch_lock(self) -> str:
        return f"{self.prefix}:oauth:fetch-lock"

    @property
    def oauth_fetch_failed(self) -> str:
        """Present for a few seconds after a failed token fetch: nobody asks again meanwhile."""
        return f"{self.prefix}:oauth:fetch-failed"

    @property
    def oauth_last_failure(self) -> str:
        """The last token-endpoint failure (JSON), for logs and /healthz; removed by the next
        successful fetch."""
        return f"{self.prefix}:oauth:last-failure"

    def console_session(self, session_digest: str) -> str:
        """A support-console session (a hash: role, CSRF token), by the SHA-256 of its cookie;
        expires with the session."""
        return f"{self.prefix}:console:session:{session_digest}"

    def console_signin_failures(self, client: str) -> str:
        """Failed console sign-ins of one client (a counter), expiring 15 minutes after the
        last failure."""
        digest = hashlib.sha256(client.encode()).hexdigest()[:32]
        return f"{self.prefix}:console:signin-failures:{digest}"

    def console_signin_wait(self, client: str) -> str:
        """Present while a client must wait before its next sign-in; expires when it may."""
        digest = hashlib.sha256(client.encode()).hexdigest()[:32]
        return f"{self.prefix}:console:signin-wait:{digest}"

    @property
    def console_call_samples(self) -> str:
        """Recent (Redis time, Tango calls so far) samples for the fleet page's calls per
        second (a list, capped, with a TTL)."""
        return f"{self.prefix}:console:call-samples"

    @property
    def console_workers_seen(self) -> str:
        """The workers last seen answering Celery's ping (JSON, cached for a few seconds)."""
        return f"{self.prefix}:console:workers-seen"
