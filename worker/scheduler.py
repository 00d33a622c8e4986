"""Releases parked requests on time, and requests whose task message was lost.

Every unfinished request has a score in the due index (see `RedisKeys.due_index`). A request
that must wait longer than a short horizon is parked there at its due time instead of living
in a worker's memory as a countdown; a request with a task message in flight sits at that
message's expected run time plus a lease. A scheduler runs in every worker. It claims what is
due in one Lua script (re-scoring each claimed request to now + lease, so of any number of
schedulers exactly one claims it) and sends its task. If that task is lost (a worker killed
between popping and recording a message, a crash before sending), the lease runs out and the
request is released again: a request can be delayed by a crash, never stranded.

Timing is skew-free: "now" is Redis's clock, and the scheduler sleeps for durations computed on
that clock with a monotonic timer, waking early when a worker parks something due sooner.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import redis

from worker.celery_app import DELIVER_TASK_NAME, RESEND_TASK_NAME, app
from worker.runtime import Runtime

logger = logging.getLogger("tango_resend.scheduler")

# KEYS: due index.  ARGV: lease (s), batch size.
# Returns {claimed ids..., next due (s from now, or -1 when nothing is scheduled)}.
_CLAIM_DUE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local lease = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now + lease, id)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_in = -1
if first[2] and first[2] ~= 'inf' then next_in = tonumber(first[2]) - now end
if next_in == math.huge then next_in = -1 end
table.insert(ids, tostring(next_in))
return ids
"""
_BATCH = 500
# While nothing is due sooner, look again at least this often (also covers lost wake-ups).
MAX_IDLE_SECONDS = 1.0


class DueReleaser:
    """Claims due requests (and owed outcome callbacks) and sends their tasks."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._claim = runtime.redis.register_script(_CLAIM_DUE)

    def release_due(self) -> tuple[int, float]:
        """One pass. Returns (tasks sent, seconds until the next scheduled entry or inf)."""
        settings, keys = self._runtime.settings, self._runtime.keys
        sent, next_in = self._release(keys.due_index, RESEND_TASK_NAME)
        if settings.result_webhook_url is not None:
            callbacks, callbacks_next = self._release(keys.callbacks_due, DELIVER_TASK_NAME)
            sent, next_in = sent + callbacks, min(next_in, callbacks_next)
        return sent, next_in

    def _release(self, index: str, task_name: str) -> tuple[int, float]:
        settings = self._runtime.settings
        reply = self._claim(keys=[index], args=[settings.lost_task_grace_seconds, _BATCH])
        *ids, next_in = (str(item) for item in reply)
        for request_id in ids:
            app.send_task(
                task_name,
                args=[request_id],
                queue=settings.resend_queue,
                task_id=request_id if task_name == RESEND_TASK_NAME else None,
            )
        if ids:
            logger.info("released %d due %s task(s)", len(ids), task_name)
        if len(ids) == _BATCH:
            return len(ids), 0.0
        wait = float(next_in)
        return len(ids), math.inf if wait < 0 else wait


def notify_scheduled(client: redis.Redis, channel: str) -> None:
    """Wake sleeping schedulers: something was parked that may be due before they look."""
    client.publish(channel, "1")


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
                    pubsub = self._runtime.redis.pubsub(  # type: ignore[no-untyped-call]
                        ignore_subscribe_messages=True
                    )
                    pubsub.subscribe(self._runtime.keys.scheduler_wakeup)
                _, next_in = self._releaser.release_due()
                # Sleep until the next due time or a wake-up, whichever is first.
                pubsub.get_message(timeout=min(max(next_in, 0.0), MAX_IDLE_SECONDS))
            except Exception:  # Redis down: try again shortly, never kill the worker
                logger.warning("scheduler pass failed; will try again", exc_info=True)
                pubsub = None
                self._stopped.wait(1.0)
        if pubsub is not None:
            pubsub.close()

    def stop(self) -> None:
        self._stopped.set()
