"""Durable before acting: Redis's `WAIT` for replicas before a step the outside world sees.

Redis acknowledges a write as soon as its primary applied it; a failover (or a replica that
never got it) can take that write back. With REDIS_WAIT_REPLICAS = N > 0, the writes the
outside world depends on are followed by `WAIT N timeout`, and the step is taken only when
Redis answers that N replicas hold them:

- a 202 or a returned id: the create script, then WAIT, on one connection;
- a call to Tango: the gate's "go", then WAIT, on one connection;
- a final status reported (the `resend_finished` hook, a callback, the CLI's "sent"): the
  finish script, then WAIT; a reader of someone else's write uses a *barrier*.

`WAIT` counts the replicas that acknowledged every write *of the connection it is sent on*,
so it must follow the write on the same connection, in the same send (a reconnect between
the two would make WAIT answer for a fresh connection that wrote nothing). A barrier is for
a write made by another connection: a small write of our own after reading, then WAIT.
Replicas acknowledge a position in one ordered stream, so once our later write is on N
replicas, everything the primary applied before it is too. The read, the barrier and the
WAIT go in one pipeline, so all three reach the same server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from worker.core.errors import TangoResendError
from worker.core.settings import Settings

# A barrier's key lives this long: any value of it will do, and it needs no cleaning up.
_BARRIER_TTL_MS = 60_000


class NotReplicated(TangoResendError, redis.RedisError):
    """Raised when a write did not reach REDIS_WAIT_REPLICAS replicas within
    REDIS_WAIT_TIMEOUT_MS: the step that depended on it is not taken (no 202, no call to
    Tango, no final status reported). A `redis.RedisError`, so every path that handles "Redis
    failed" (503, `EnqueueError`, a run tried again later) handles this one too."""

    def __init__(self, step: str, acknowledged: int, wait: ReplicaWait) -> None:
        super().__init__(
            f"{step}: on {acknowledged} of {wait.replicas} replica(s) after "
            f"{wait.timeout_ms} ms (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS)"
        )
        self.step = step
        self.acknowledged = acknowledged


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas must hold a write before the step after it, and how long to wait."""

    replicas: int
    timeout_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicaWait | None:
        """The settings' wait; None when REDIS_WAIT_REPLICAS is 0 (nothing waits)."""
        if settings.redis_wait_replicas <= 0:
            return None
        return cls(settings.redis_wait_replicas, settings.redis_wait_timeout_ms)

    @property
    def command(self) -> tuple[str, int, int]:
        """The WAIT command, to send right after the write it is about."""
        return ("WAIT", self.replicas, self.timeout_ms)

    def queue(self, pipe: Any) -> None:
        """Add WAIT to a pipeline, behind the writes queued on it."""
        pipe.execute_command(*self.command)

    def confirmed(self, acknowledged: Any) -> bool:
        """Whether WAIT's answer (the replicas that acknowledged) is enough."""
        return int(acknowledged) >= self.replicas

    def require(self, acknowledged: Any, step: str) -> None:
        """Raise `NotReplicated` unless WAIT's answer is enough for `step`."""
        if not self.confirmed(acknowledged):
            raise NotReplicated(step, int(acknowledged), self)

    def read_confirmed(
        self, client: redis.Redis, barrier_key: str, read: Callable[[Any], None]
    ) -> tuple[list[Any], bool]:
        """Run `read` (it queues commands on the pipeline it is given), then a barrier and
        WAIT, in one pipeline on one connection. Returns the read's replies and whether
        everything they saw is on the replicas."""
        with client.pipeline(transaction=False) as pipe:
            read(pipe)
            pipe.set(barrier_key, "1", px=_BARRIER_TTL_MS)
            self.queue(pipe)
            replies = pipe.execute()
        return replies[:-2], self.confirmed(replies[-1])
