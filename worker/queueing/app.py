"""The Celery application, its task names and how a task is published.

Its configuration is read from the settings lazily, on first use. What a worker process runs
beside its tasks (the scheduler, callback delivery threads) is `lifecycle.py`'s."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click
from celery import Celery, Task, signals
from celery.backends.base import DisabledBackend
from click.core import ParameterSource

from worker.core.logging_setup import configure_handlers
from worker.core.settings import ConfigurationError, Settings, get_settings
from worker.queueing import transport
from worker.queueing.task_names import DELIVER_TASK_NAME, RESEND_TASK_NAME
from worker.state.connection import sentinel_node_options

__all__ = [
    "DELIVER_TASK_NAME",
    "RESEND_TASK_NAME",
    "ResultlessTask",
    "app",
    "celery_config",
    "publish_resend",
]

transport.register()


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for a fleet of I/O-bound workers sharing one Redis."""
    visibility_timeout = settings.broker_visibility_timeout_seconds
    broker, transport_options = _broker(settings)
    return {
        **broker,
        "broker_transport_options": {
            **transport_options,
            # A message unacknowledged this long (its worker died) goes back to the queue.
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": max(1, visibility_timeout // 10),
            "unacked_restore_throttle": 1,
            # A worker killed during its restore sweep leaves the sweep's mutex behind; keep
            # that stall short (kombu's default is five minutes).
            "unacked_mutex_expire": min(10, visibility_timeout),
            # As the state's clients (`worker.state.connection.CLIENT_OPTIONS`); kombu's BRPOP
            # is not bound by it.
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            # A consumer whose BRPOP gets no reply (a primary cut off by a partition keeps the
            # socket open and silent) drops the connection after this plus the BRPOP's own
            # 1 s, checked this often: about 4 to 7 s, where kombu's default (25 s) took 46.
            # Idle connections are pinged this often too: a PING every few seconds at most.
            "health_check_interval": 3,
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
        # What `tango-resend worker` passes on its command line, so that `celery -A worker
        # worker` runs the same: a threads pool (calls to Tango are I/O-bound) of
        # WORKER_CONCURRENCY. Celery's own --pool and --concurrency still win.
        **_default_pool(),
        "worker_concurrency": settings.worker_concurrency,
        # No per-worker queues: every wait is parked in Redis's due index and every task goes
        # to the shared queue, so nothing waits where only one (possibly dead) worker can take
        # it (docs/how-it-works.md, "Waiting").
        "worker_direct": False,
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


if TYPE_CHECKING:
    _TaskBase = Task[Any, Any]
else:
    _TaskBase = Task  # Celery's Task takes no type arguments at run time


class ResultlessTask(_TaskBase):
    """A task with one "disabled" result backend for all the pool's threads. Results are not
    kept (records are the source of truth), but Celery still builds a backend for each pool
    thread on its first task: 5 ms of CPU under the GIL each, so a fresh worker's 16 threads
    took 90 ms before their second task (measured: a queued backlog's second round started
    that late). Built on first use, not at import: the app's configuration is read then."""

    _backend: Any = None

    @property
    def backend(self) -> Any:
        backend = self._backend
        if backend is None:
            backend = self._backend = DisabledBackend(self.app)
        return backend

    @backend.setter
    def backend(self, value: Any) -> None:
        self._backend = value


def _default_pool() -> dict[str, str]:
    """`worker_pool: threads`, unless this command line names a pool: Celery takes a
    configured pool over `--pool prefork` (which it cannot tell from its default), so one
    given explicitly must leave the setting unset. (`tango-resend worker` sets it itself.)"""
    named = any(arg == "-P" or arg.startswith(("-P", "--pool")) for arg in sys.argv[1:])
    return {} if named else {"worker_pool": "threads"}


def _broker(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The broker's URL, transport and TLS settings, and its Sentinel transport options.

    kombu's Redis transport with resend tasks' acknowledgements kept in memory (our own lease
    covers them: `transport.py`), on `redis://`, `rediss://` and Sentinel alike. A `rediss://`
    URL gets `broker_use_ssl` spelled out: without it kombu would connect without checking the
    server's certificate. `unix://` keeps kombu's own transport."""
    target = settings.redis_target
    if target.scheme == "unix":
        return {"broker_url": settings.redis_url}, {}
    auth = ""
    if target.username or target.password:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
    if target.is_sentinel:
        host, port = target.sentinels[0]
        sentinel_kwargs = sentinel_node_options(settings)
        return (
            {
                # One sentinel in the URL (kombu reads the database and password from it);
                # all of them in `sentinels` (see `transport.py` for why not `;` alternates).
                "broker_url": f"sentinel://{auth}{host}:{port}/{target.db}",
                "broker_transport": transport.SENTINEL_TRANSPORT_NAME,
            },
            {
                "master_name": settings.redis_sentinel_master,
                "sentinels": [list(node) for node in target.sentinels],
                "sentinel_kwargs": sentinel_kwargs,
            },
        )
    broker: dict[str, Any] = {
        "broker_url": f"{target.scheme}://{auth}{target.host}:{target.port}/{target.db}",
        "broker_transport": transport.TRANSPORT_NAME,
    }
    if target.tls is not None:
        broker["broker_transport"] = transport.TLS_TRANSPORT_NAME
        broker["broker_use_ssl"] = target.tls.redis_kwargs()
    return broker, {}


def publish_resend(request_id: str, dispatch: int, queue: str) -> None:
    """Publish a request's task to the shared queue; `dispatch` numbers the message, so the
    scheduler can tell a message still queued from a lost one (see `worker.queueing.scheduler`)."""
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


# `lifecycle` is imported by each worker at start, like the task modules, and connects what a
# worker runs beside its tasks; the app itself (imported by producers too) imports none of it.
app = Celery(
    "tango_resend",
    include=["tasks.resend", "tasks.callbacks", "worker.queueing.lifecycle"],
)
app.add_defaults(_lazy_config)


@signals.worker_init.connect
def _check_settings_at_start(**_: Any) -> None:
    """Refuse to start a worker that could not call Tango, naming what is missing."""
    try:
        get_settings().require_tango_credentials()
    except ConfigurationError as error:
        print(f"tango-resend: {error}", file=sys.stderr)
        raise SystemExit(2) from None


# A worker's consumer waits this long for a new primary before Celery's own reconnection
# backoff takes over (`transport.LeasedSentinelTransport`): Sentinel's default detection
# (30 s) plus an election that had to be run twice.
WORKER_PRIMARY_WAIT_SECONDS = 60.0


@signals.worker_init.connect
def _consume_again_as_soon_as_a_primary_answers(sender: Any = None, **_: Any) -> None:
    """In workers only: under Sentinel, follow a failover within a fraction of a second."""
    conf = (sender.app if sender is not None else app).conf
    options = dict(conf.broker_transport_options or {})
    if "sentinels" in options:
        options.setdefault("primary_wait_seconds", WORKER_PRIMARY_WAIT_SECONDS)
        conf.broker_transport_options = options


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _configure_logging(logger: logging.Logger, **_: Any) -> None:
    """Mask contact data in every line, Celery's own included; JSON with LOG_FORMAT=json; and
    LOG_LEVEL when `celery worker` was given no --loglevel of its own."""
    try:
        settings: Settings | None = get_settings()
    except ConfigurationError:
        settings = None
    configure_handlers(logger, settings.log_format if settings is not None else "text")
    if settings is not None and _celery_default_loglevel():
        logger.setLevel(settings.log_level.upper())


def _celery_default_loglevel() -> bool:
    """Whether this process is `celery ... worker` run without --loglevel (Celery's default,
    WARNING, would then hide our INFO lines whatever LOG_LEVEL says). `tango-resend worker`
    always passes one."""
    context = click.get_current_context(silent=True)
    if context is None or "loglevel" not in context.params:
        return False
    return context.get_parameter_source("loglevel") is ParameterSource.DEFAULT
