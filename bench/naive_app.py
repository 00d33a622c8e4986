"""The peers tango-resend is measured against, as a Celery app of their own.

- `bench.plain_resend`: one POST to the sandbox, nothing else. The overhead baseline: the same
  HTTP call, the same HTTP session setup, the same Celery options, pool and concurrency as
  tango-resend's worker, without records, window, FIFO or outcome handling.
- `bench.naive_resend`: what most teams would write instead of tango-resend: call Tango and,
  on its cooldown error (403.005), let Celery retry with `autoretry_for` and
  `retry_backoff=True`, every other retry option at Celery's default (full jitter, at most
  600 s, `max_retries=3`). When the retries run out, the resend is lost (the task fails).

Configured from the same environment variables as tango-resend (REDIS_URL, RESEND_QUEUE,
TANGO_BASE_URL, TANGO_PLATFORM_NAME/KEY, timeouts, WORKER_CONCURRENCY).
Start a worker with `celery -A bench.naive_app worker --pool=threads -Q $RESEND_QUEUE`.
"""

from __future__ import annotations

import base64
import threading
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import redis
import requests
from celery import Celery, signals

from worker.core.settings import get_settings
from worker.queueing import app as ours
from worker.queueing.app import ResultlessTask
from worker.tango.client import build_session

PLAIN_TASK = "bench.plain_resend"
DURABLE_PLAIN_TASK = "bench.plain_resend_durable"
NAIVE_TASK = "bench.naive_resend"

# tango-resend's scheduler is connected by `worker.queueing.lifecycle`, which only our own
# app's workers import (its `include`): the peers, which import just the app, run none.
app = Celery("bench_peer")
app.add_defaults(lambda: ours.celery_config(get_settings()))


class TangoCooldown(Exception):
    """Tango answered 403.005: the order was resent less than a window ago."""


_local = threading.local()


@lru_cache(maxsize=1)
def _target() -> tuple[str, dict[str, str], tuple[float, float]]:
    settings = get_settings()
    name = settings.tango_platform_name or ""
    key = settings.tango_platform_key.get_secret_value() if settings.tango_platform_key else ""
    authorization = "Basic " + base64.b64encode(f"{name}:{key}".encode()).decode()
    timeout = (settings.tango_connect_timeout_seconds, settings.tango_timeout_seconds)
    return str(settings.tango_base_url).rstrip("/"), {"Authorization": authorization}, timeout


@lru_cache(maxsize=1)
def _session() -> requests.Session:
    # One pooled session per process, exactly as tango-resend builds its own.
    return build_session(get_settings().worker_concurrency)


def _post(order: str, body: dict[str, str]) -> requests.Response:
    base_url, headers, timeout = _target()
    return _session().post(
        f"{base_url}/orders/{quote(order, safe='')}/resends",
        json=body,
        headers=headers,
        timeout=timeout,
        allow_redirects=False,
    )


# The same shared result backend as tango-resend's tasks (`ResultlessTask`): without it, each
# pool thread builds one on its first task, which would count against the peer.
@app.task(base=ResultlessTask, name=PLAIN_TASK, acks_late=True)
def plain_resend(order: str, body: dict[str, str]) -> int:
    """The same HTTP call as tango-resend's, and nothing else."""
    return _post(order, body).status_code


@app.task(base=ResultlessTask, name=DURABLE_PLAIN_TASK, acks_late=True)
def plain_resend_durable(order: str, body: dict[str, str]) -> int:
    """The same HTTP call, between the WAITs tango-resend makes with REDIS_WAIT_REPLICAS: a
    write confirmed on the replicas before the call (our gate's "go") and one after it (our
    final status). What a team adding `WAIT` to a plain task would pay."""
    _durable_write(order, "calling")
    status = _post(order, body).status_code
    _durable_write(order, str(status))
    return status


def _durable_write(order: str, value: str) -> None:
    settings = get_settings()
    with _redis().pipeline(transaction=False) as pipe:  # one connection: WAIT answers for it
        pipe.set(f"{_queue()}:state:{order}", value, ex=3600)
        pipe.execute_command("WAIT", settings.redis_wait_replicas, settings.redis_wait_timeout_ms)
        _, acknowledged = pipe.execute()
    if int(acknowledged) < settings.redis_wait_replicas:
        raise RuntimeError(f"not on {settings.redis_wait_replicas} replica(s)")


@app.task(base=ResultlessTask, name=NAIVE_TASK, autoretry_for=(TangoCooldown,), retry_backoff=True)
def naive_resend(order: str, body: dict[str, str]) -> int:
    """Call Tango; on its cooldown error, let Celery retry with exponential backoff."""
    response = _post(order, body)
    if response.status_code == 403 and response.json().get("i18nKey") == "403.005":
        raise TangoCooldown(response.json().get("message"))
    response.raise_for_status()
    return response.status_code


# -- bookkeeping for the benchmark (not part of what a team would write) --------------------


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(str(get_settings().redis_url))


def _queue() -> str:
    return get_settings().resend_queue


@signals.worker_ready.connect
def _announce_ready(**_: Any) -> None:
    _redis().incr(f"{_queue()}:ready")


@signals.task_success.connect
def _count_success(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) == NAIVE_TASK:
        _redis().incr(f"{_queue()}:done")


@signals.task_failure.connect
def _count_failure(sender: Any = None, **_: Any) -> None:
    # Retries raise `Retry`, which is not a failure: this is a task that gave up.
    if getattr(sender, "name", None) == NAIVE_TASK:
        _redis().incr(f"{_queue()}:done")
        _redis().incr(f"{_queue()}:gave-up")
