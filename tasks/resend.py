"""The resend task. The decisions live in `worker.resend.executor` and `worker.resend.decision`."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import redis
from celery import Task
from celery.exceptions import Reject

from worker.core.conditions import REDIS_UNREACHABLE
from worker.queueing.app import RESEND_TASK_NAME, ResultlessTask, app
from worker.resend.executor import ResendExecutor
from worker.runtime import current_runtime

logger = logging.getLogger("tango_resend.task")

# Waits after Redis itself failed mid-run; the record and window are re-read on the next run.
_INFRASTRUCTURE_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


@app.task(
    base=ResultlessTask,
    bind=True,
    name=RESEND_TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    # Deferrals and retries are counted in the record (a deferral must not use up the retry
    # budget), so Celery's own counter is not the limit.
    max_retries=None,
)
def send_resend(self: Task[Any, Any], request_id: str, dispatch: int | None = None) -> str | None:
    """Run one resend request. Its waits are parked in Redis, where a scheduler publishes the
    task again when it is due; `dispatch` numbers the message (see `worker.queueing.scheduler`)."""
    runtime = current_runtime()
    executor = ResendExecutor(runtime)
    try:
        with runtime.metrics.batch():
            step = executor.run(request_id, dispatch)
    except redis.RedisError as error:
        attempt = min(self.request.retries, len(_INFRASTRUCTURE_BACKOFF_SECONDS) - 1)
        # One line when Redis goes, one a minute, one when it is back: not one per task.
        REDIS_UNREACHABLE.report(f"request={request_id} mid-run (will run again): {error}")
        _run_again(self, _INFRASTRUCTURE_BACKOFF_SECONDS[attempt])
    except Exception as error:
        # A bug of ours: fail this request visibly rather than crash-loop or drop it silently.
        logger.exception("request=%s failed on an unexpected error", request_id)
        executor.fail_unexpectedly(request_id, error)
        return "failed"
    return None if step.status is None else step.status.value


def _run_again(task: Task[Any, Any], countdown: float) -> NoReturn:
    # Back on the shared queue, so whichever worker is up takes it. The countdown needs no
    # precision: the run re-reads the request and the gate judges on Redis's clock. (The
    # request's lease in the due index would release it too; this is just sooner.)
    try:
        raise task.retry(countdown=countdown, max_retries=None)
    except Reject as rejected:
        # Celery drops the message when it cannot publish the retry; we put it back instead.
        # With Redis down even that fails, and the unacknowledged message is restored once the
        # visibility timeout passes: delayed, never lost.
        raise Reject(getattr(rejected, "reason", None), requeue=True) from None
