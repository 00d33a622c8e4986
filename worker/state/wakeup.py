"""Waking the fleet's sleeping schedulers (`worker/queueing/scheduler.py`), without Celery.

A scheduler sleeps until the next due time it knows of, or `MAX_IDLE_SECONDS`, whichever is
sooner; a run that parks a request due before then publishes on `RedisKeys.scheduler_wakeup`.
"""

from __future__ import annotations

import redis

# While nothing is due sooner, a scheduler looks again at least this often (also covers lost
# wake-ups).
MAX_IDLE_SECONDS = 1.0


def notify_scheduled(client: redis.Redis, channel: str) -> None:
    """Wake sleeping schedulers: something was parked that may be due before they look."""
    client.publish(channel, "1")
