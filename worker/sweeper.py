"""Finds unfinished requests whose task message was lost, and queues them again.

Kombu's Redis transport pops a message and records it as unacknowledged in two steps; a worker
killed between them loses the message, and the broker cannot know. Records can: each
unfinished request sits in a due index scored by when its task should next run. One long
overdue is claimed atomically (its score pushed forward, so of many sweepers exactly one
claims it) and its task is sent again. Running a request twice is safe (the window lock and
the record's status decide), so a false alarm costs one cheap task, never a second resend.
"""

from __future__ import annotations

import logging
import threading

from worker.celery_app import RESEND_TASK_NAME, app
from worker.runtime import Runtime

logger = logging.getLogger("tango_resend.sweeper")

# Claims up to ARGV[2] ids due before now - ARGV[1] seconds (Redis's clock), re-scoring each
# to now + ARGV[1] so no other sweeper takes it meanwhile.
_CLAIM_OVERDUE = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
local grace = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', seconds - grace, 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], seconds + grace, id)
end
return ids
"""
_BATCH = 500


class LostTaskSweeper:
    """Re-sends the tasks of requests overdue by more than the grace period."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._claim = runtime.redis.register_script(_CLAIM_OVERDUE)
        self._grace = runtime.settings.lost_task_grace_seconds

    def sweep_once(self) -> int:
        """One pass; returns how many tasks were sent again."""
        ids = [
            str(i)
            for i in self._claim(keys=[self._runtime.keys.due_index], args=[self._grace, _BATCH])
        ]
        requeued = 0
        for request_id in ids:
            record = self._runtime.records.get(request_id)
            if record is None or record.status.is_final:
                self._runtime.records.forget_due(request_id)
                continue
            app.send_task(
                RESEND_TASK_NAME,
                args=[request_id],
                task_id=request_id,
                queue=self._runtime.settings.resend_queue,
            )
            requeued += 1
            logger.warning(
                "request=%s order=%s overdue, its task presumed lost: queued again",
                request_id,
                record.reference_order_id,
            )
        return requeued


class SweeperThread(threading.Thread):
    """Runs `LostTaskSweeper` in the background of a worker until stopped."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(name="tango-resend-sweeper", daemon=True)
        self._sweeper = LostTaskSweeper(runtime)
        self._interval = max(1.0, runtime.settings.lost_task_grace_seconds / 4)
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._sweeper.sweep_once()
            except Exception:  # Redis down: try again next round, never kill the worker
                logger.warning("lost-task sweep failed; will try again", exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
