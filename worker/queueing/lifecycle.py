"""What each worker process runs beside its tasks, started when it is ready and stopped when
it shuts down: the scheduler that releases due requests (`scheduler.py`), the outcome callbacks'
delivery threads (`worker/resend/callbacks.py`) and, with `METRICS_PORT`, the metrics endpoint.

Celery imports this module in every worker at start (the app's `include`), as it does the task
modules; producers, the CLI and the web app never do.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from worker.queueing.broker_logs import install_broker_loss_filter
from worker.queueing.scheduler import SchedulerThread
from worker.resend.callbacks import CallbackThread
from worker.runtime import current_runtime
from worker.state.metrics_export import build_registry
from worker.state.redis_durability import log_durability
from worker.state.redis_health import warn_if_evicting

logger = logging.getLogger("tango_resend.worker")


@signals.worker_ready.connect
def _quiet_broker_loss(**_: Any) -> None:
    """Redis lost: one line a minute, not a traceback a second (broker_logs.py). Installed
    once logging is set up: Celery's setup turns its own deprecation warnings on."""
    install_broker_loss_filter()


@signals.worker_ready.connect
def _warm_up(**_: Any) -> None:
    """Build what every run uses, and load the scripts, before the first tasks do it in the
    middle of their first calls (`Runtime.warm_up`)."""
    try:
        current_runtime().warm_up()
    except RedisError as error:  # the first tasks build it instead
        logger.warning("could not warm up before the first tasks: %s", error)


@signals.worker_ready.connect
def _warn_if_redis_evicts(**_: Any) -> None:
    """Say loudly at start when Redis may evict our data (see worker/state/redis_health.py),
    and what a crash of it can lose (worker/state/redis_durability.py)."""
    warn_if_evicting(current_runtime().redis)
    log_durability(current_runtime().redis)


_schedulers: list[Any] = []  # the scheduler and the callback delivery threads
_SCHEDULER_STOP_SECONDS = 5.0


@signals.worker_ready.connect
def _start_scheduler(**_: Any) -> None:
    """Every worker runs a scheduler; they share the work through Redis (see scheduler.py)."""
    runtime = current_runtime()
    thread = SchedulerThread(runtime)
    thread.start()
    _schedulers.append(thread)
    if runtime.settings.result_webhook_url is not None:
        # Outcome callbacks have their own queue (the outbox) and their own few threads, so
        # a slow endpoint never holds a resend thread (worker/resend/callbacks.py).
        for number in range(runtime.settings.result_webhook_concurrency):
            callbacks = CallbackThread(runtime, number)
            callbacks.start()
            _schedulers.append(callbacks)
    if runtime.settings.metrics_port:
        registry = build_registry(
            runtime.redis, runtime.keys, runtime.settings.resend_queue, runtime.outage
        )
        start_http_server(runtime.settings.metrics_port, registry=registry)


@signals.worker_shutdown.connect
def _stop_scheduler(**_: Any) -> None:
    # Let a pass in progress publish what it claimed before the process exits, so a deploy
    # leaves no claimed request waiting out its lease.
    while _schedulers:
        thread = _schedulers.pop()
        thread.stop()
        thread.join(timeout=_SCHEDULER_STOP_SECONDS)
