"""The Celery app of the test process itself (the producer side), pointed at a test's broker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kombu import pools as kombu_pools

from worker.core.settings import get_settings
from worker.queueing.app import app as celery_app
from worker.queueing.app import celery_config


def _drop_broker_pools() -> None:
    # What Celery itself does after a fork: forget every pooled broker connection.
    kombu_pools.reset()
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@contextlib.contextmanager
def producer_broker() -> Iterator[None]:
    """Point this process's Celery app (the producer side) at the current settings' broker.

    Celery reads its configuration once per process; tests that run their own redis-server
    must not publish to whichever broker an earlier test configured.
    """
    conf = celery_app.conf
    wanted = celery_config(get_settings())
    # The transport and TLS options too: a Sentinel or TLS broker needs them with its URL.
    names = (
        "broker_url",
        "broker_transport",
        "broker_transport_options",
        "broker_use_ssl",
        "task_default_queue",
    )
    saved = {name: conf.get(name) for name in names}
    conf.update({name: wanted.get(name) for name in names})
    _drop_broker_pools()
    try:
        yield
    finally:
        _drop_broker_pools()
        conf.update(saved)
