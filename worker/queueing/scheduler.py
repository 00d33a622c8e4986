"""Releases requests when they are due: every wait of every request runs through here.

Every unfinished request has a score in the due index (see `RedisKeys.due_index`): a waiting
request sits at its due time (the end of its order's window, its rate-limit slot, its
backoff); a request whose task message is out (published, or taken by a worker) sits at that
moment plus a short lease (`RESEND_LEASE_SECONDS`). A scheduler runs in every worker. It claims
what is due in one Lua script (re-scoring each claimed request to now + lease, so of any
number of schedulers exactly one claims it) and publishes its task to the shared queue, where
any worker of the fleet can take it. Nothing waits in one worker's memory or one worker's own
queue, so a worker that is deployed away or killed strands nothing.

When a lease runs out, the script tells a lost message from a slow one before releasing the
request again:
- a call to Tango in flight (`calling_until` on the record) keeps its run responsible until the
  call must be over (twice the connect and read timeouts); then the request is released, and
  the next run probes Tango if that call's outcome was never stored;
- a message still waiting in the broker queue is left alone: each published message carries a
  dispatch number, workers record the highest number they have taken, and the broker queue is
  FIFO, so a request is presumed lost only when the queue is empty or a message published
  after its own was taken. A backlog that waits long in the queue is never re-released in bulk.
  A message near the queue's front is looked at again about a second later, not a lease: taken
  and lost (its worker killed before the run began), it is released once a later one is taken.
Dispatch numbers are exact for the messages the create script pushes (they carry none; the
number is kept on the record, `cd`, so a re-release under a newer number does not change what
taking the first one counts). They are not exact in one case, on purpose: schedulers number
messages in the claim and publish them after it, so two schedulers' messages can reach the
queue out of numbering order. Numbering inside the publish would need the script that pushes
the message to write its number into kombu's encoded body. The cost of the disorder is
bounded and harmless: a message overtaken by a higher-numbered one published just before it
can be presumed lost only if it is still queued a whole lease later; it is then released once
more, and the extra message is fenced (its run finds the request taken or final: no second
call to Tango).
A replayed claim (redis-py retries a script whose reply was lost) returns the same claim, and
a publish that fails mid-batch hands the rest back at once, so neither strands a request.

Timing is skew-free: "now" is Redis's clock, and the scheduler sleeps for durations computed on
that clock with a monotonic timer, woken early by pub/sub when a worker parks something due
sooner.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from typing import Any

import redis
from kombu.exceptions import OperationalError

from worker.core.conditions import (
    REDIS_UNREACHABLE,
    redis_error_detail,
)
from worker.queueing.app import publish_resend
from worker.runtime import Runtime
from worker.state import scripts
from worker.state.wakeup import MAX_IDLE_SECONDS

logger = logging.getLogger("tango_resend.scheduler")

_BATCH = 500
# Redis lost: its client's errors, or kombu's when a publish to the broker (our Redis) fails.
_REDIS_LOST: tuple[type[Exception], ...] = (redis.RedisError, OperationalError)
_CLAIM_MEMO_SECONDS = 60
# A request whose message may have been taken and lost before its run began is looked at again
# this soon when its message is among the nearest to the queue's front (claim_due.lua).
_LOST_RECHECK_SECONDS = 1.0
_LOST_RECHECK_NEAREST = 100


class DueReleaser:
    """Claims due requests and publishes their tasks."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._claim_resends = scripts.load("claim_due").bind(runtime.redis)

    def release_due(self) -> tuple[int, float]:
        """One pass. Returns (tasks sent, seconds until the next scheduled entry or inf).

        Owed outcome callbacks are not released here: each worker's delivery threads take
        them from the outbox themselves (worker/resend/callbacks.py), off the resend queue."""
        return self._release_resends()

    def claim_resends(self) -> tuple[list[tuple[str, int]], float]:
        """Claim the due requests: [(id, dispatch number)], seconds until the next one."""
        settings, keys = self._runtime.settings, self._runtime.keys
        claim_id = uuid.uuid4().hex  # the same id if redis-py replays this call
        reply = self._claim_resends(
            keys={
                "due_key": keys.due_index,
                "dispatched_key": keys.dispatched,
                "consumed_key": keys.dispatch_consumed,
                "dispatch_sequence_key": keys.dispatch_sequence,
                "memo_key": keys.scheduler_claim(claim_id),
                "queue_key": settings.resend_queue,
            },
            args={
                "lease": settings.resend_lease_seconds,
                "batch": _BATCH,
                "record_prefix": keys.record(""),
                "memo_ttl": _CLAIM_MEMO_SECONDS,
                "recheck": _LOST_RECHECK_SECONDS,
                "recheck_nearest": _LOST_RECHECK_NEAREST,
            },
        )
        *pairs, next_in = (str(item) for item in reply)
        claimed = [(pairs[i], int(pairs[i + 1])) for i in range(0, len(pairs), 2)]
        wait = float(next_in)
        return claimed, math.inf if wait < 0 else wait

    def _release_resends(self) -> tuple[int, float]:
        claimed, next_in = self.claim_resends()
        queue = self._runtime.settings.resend_queue
        for index, (request_id, dispatch) in enumerate(claimed):
            try:
                publish_resend(request_id, dispatch, queue)
            except Exception:
                self._hand_back(claimed[index:])
                raise
        if claimed:
            logger.info("released %d due request(s)", len(claimed))
        return len(claimed), next_in

    def _hand_back(self, unpublished: list[tuple[str, int]]) -> None:
        """A publish failed: the rest of the batch is due again now, not after its lease."""
        records = self._runtime.records
        try:
            for request_id, dispatch in unpublished:
                records.release_unpublished(request_id, dispatch)
        except redis.RedisError:
            logger.warning(
                "could not hand back %d claimed request(s); their lease releases them",
                len(unpublished),
            )


class SchedulerThread(threading.Thread):
    """Runs `DueReleaser` in a worker's main process until stopped."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(name="tango-resend-scheduler", daemon=True)
        self._runtime = runtime
        self._releaser = DueReleaser(runtime)
        self._stopped = threading.Event()

    def run(self) -> None:
        pubsub: Any = None
        while not self._stopped.is_set():
            try:
                if pubsub is None:
                    pubsub = self._runtime.redis.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self._runtime.keys.scheduler_wakeup)
                _, next_in = self._releaser.release_due()
                REDIS_UNREACHABLE.clear()
                # Sleep until the next due time or a wake-up, whichever is first.
                pubsub.get_message(timeout=min(max(next_in, 0.0), MAX_IDLE_SECONDS))
            except _REDIS_LOST as error:  # Redis down: one line a minute, not a traceback
                REDIS_UNREACHABLE.report(f"scheduler: {redis_error_detail(error)}")
                pubsub = None
                self._stopped.wait(1.0)
            except Exception:  # a bug of ours: say so, try again shortly, never kill the worker
                logger.warning("scheduler pass failed; will try again", exc_info=True)
                pubsub = None
                self._stopped.wait(1.0)
        if pubsub is not None:
            pubsub.close()

    def stop(self) -> None:
        self._stopped.set()
