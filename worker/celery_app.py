"""The Celery application. Its configuration is read from the settings lazily, on first use."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery, signals

from worker.logging_setup import configure_handlers
from worker.settings import ConfigurationError, Settings, get_settings

RESEND_TASK_NAME = "tango_resend.send_resend"
DELIVER_TASK_NAME = "tango_resend.deliver_outcome"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for a fleet of I/O-bound workers sharing one Redis."""
    visibility_timeout = settings.broker_visibility_timeout_seconds
    return {
        "broker_url": str(settings.redis_url),
        "broker_transport_options": {
            # A message unacknowledged this long (its worker died) goes back to the queue.
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": max(1, visibility_timeout // 10),
            "unacked_restore_throttle": 1,
            # A worker killed during its restore sweep leaves the sweep's mutex behind; keep
            # that stall short (kombu's default is five minutes).
            "unacked_mutex_expire": min(10, visibility_timeout),
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        },
        "broker_connection_retry_on_startup": True,
        # Records in Redis are the source of truth; Celery results would only duplicate them.
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": settings.resend_queue,
        # Acknowledge after the work, and requeue if the process dies: no request is lost.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Cancelling running tasks when the broker connection drops crashes the threads pool
        # (it cannot kill a job); the tasks finish, and acks-late redelivers what was lost.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_prefetch_multiplier": 1,
        # No per-worker queues: every wait is parked in Redis's due index and every task goes
        # to the shared queue, so nothing waits where only one (possibly dead) worker can take
        # it (README, "Scheduling model").
        "worker_direct": False,
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


def publish_resend(request_id: str, dispatch: int, queue: str) -> None:
    """Publish a request's task to the shared queue; `dispatch` numbers the message, so the
    scheduler can tell a message still queued from a lost one (see `worker.scheduler`)."""
    app.send_task(
        RESEND_TASK_NAME,
        args=[request_id],
        kwargs={"dispatch": dispatch},
        queue=queue,
        task_id=request_id,
    )


def _lazy_config() -> dict[str, Any]:
    try:
        return celery_config(get_settings())
    except ConfigurationError as error:
        # Reached from `celery -A worker ...`: stop at start with the variable named.
        print(f"tango-resend: {error}", file=sys.stderr)
        raise SystemExit(2) from None


app = Celery("tango_resend", include=["tasks.resend", "tasks.callbacks"])
app.add_defaults(_lazy_config)


@signals.worker_init.connect
def _check_settings_at_start(**_: Any) -> None:
    """Refuse to start a worker that could not call Tango, naming what is missing."""
    try:
        get_settings().require_tango_credentials()
    except ConfigurationError as error:
        print(f"tango-resend: {error}", file=sys.stderr)
        raise SystemExit(2) from None


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _configure_logging(logger: logging.Logger, **_: Any) -> None:
    """Mask contact data in every line, Celery's own included; JSON with LOG_FORMAT=json."""
    try:
        log_format = get_settings().log_format
    except ConfigurationError:
        log_format = "text"
    configure_handlers(logger, log_format)


@signals.worker_ready.connect
def _warn_if_redis_evicts(**_: Any) -> None:
    """Say loudly at start when Redis may evict our data (see worker/redis_health.py)."""
    from worker.redis_health import warn_if_evicting
    from worker.runtime import current_runtime

    warn_if_evicting(current_runtime().redis)


_schedulers: list[Any] = []  # the scheduler and the callback delivery threads
_SCHEDULER_STOP_SECONDS = 5.0


@signals.worker_ready.connect
def _start_scheduler(**_: Any) -> None:
    """Every worker runs a scheduler; they share the work through Redis (see scheduler.py)."""
    from worker.runtime import current_runtime
    from worker.scheduler import SchedulerThread

    runtime = current_runtime()
    thread = SchedulerThread(runtime)
    thread.start()
    _schedulers.append(thread)
    if runtime.settings.result_webhook_url is not None:
        # Outcome callbacks have their own queue (the outbox) and their own few threads, so
        # a slow endpoint never holds a resend thread (worker/callbacks.py).
        from worker.callbacks import CallbackThread

        for number in range(runtime.settings.result_webhook_concurrency):
            callbacks = CallbackThread(runtime, number)
            callbacks.start()
            _schedulers.append(callbacks)
    if runtime.settings.metrics_port:
        from prometheus_client import start_http_server

        from worker.metrics import build_registry

        registry = build_registry(runtime.redis, runtime.keys, runtime.settings.resend_queue)
        start_http_server(runtime.settings.metrics_port, registry=registry)


@signals.worker_shutdown.connect
def _stop_scheduler(**_: Any) -> None:
    # Let a pass in progress publish what it claimed before the process exits, so a deploy
    # leaves no claimed request waiting out its lease.
    while _schedulers:
        thread = _schedulers.pop()
        thread.stop()
        thread.join(timeout=_SCHEDULER_STOP_SECONDS)
