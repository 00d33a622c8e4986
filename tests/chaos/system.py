"""The whole system as real processes, for fault and hostile-input tests.

A redis-server of the test's own (for tests that break Redis), the webhook receiver as a
subprocess, worker subprocesses, signed webhook posts, and readers of the sandbox's call log.
Nothing here sleeps for a fixed time to wait for a state: every wait polls with a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import requests
from kombu import pools as kombu_pools

from tests.integration.harness import free_port, wait_for
from worker import ResendRecord, get_resend
from worker.core.settings import get_settings
from worker.queueing.app import app as celery_app
from worker.queueing.app import celery_config
from worker.sandbox import SandboxControl
from worker.web.webhook_signature import sign

REDIS_SERVER = "/usr/bin/redis-server"


# --- a redis-server of the test's own -------------------------------------------------------


class RedisServer:
    """`redis-server` on a free loopback port, append-only file in `workdir`.

    Only this server is ever killed, restarted or has its clients dropped; the shared Redis
    other suites use is never touched.
    """

    def __init__(
        self, workdir: Path, *, appendfsync: str = "everysec", extra_args: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendfsync = appendfsync
        # More redis-server options, e.g. ("--maxmemory-policy", "allkeys-lru").
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5
        )

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.starts += 1
        log = self.workdir / f"redis-{self.starts}.log"
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--logfile",
                str(log),
                "--daemonize",
                "no",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{log.read_text(errors='replace')}")
            with contextlib.closing(self.client()) as client:
                try:
                    return bool(client.ping())
                except redis.RedisError:  # refused, or still loading its AOF
                    return False

        wait_for(answers, timeout=timeout, interval=0.05, what="redis-server to answer")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: Redis writes and syncs its append-only file, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill_clients(self, kind: str) -> int:
        """`CLIENT KILL TYPE normal|pubsub` (our own connection reconnects when needed)."""
        with contextlib.closing(self.client()) as client:
            return int(client.execute_command("CLIENT", "KILL", "TYPE", kind))


# --- the Celery app of this test process ------------------------------------------------------


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
    names = ("broker_url", "broker_transport_options", "task_default_queue")
    saved = {name: conf.get(name) for name in names}
    conf.update({name: wanted[name] for name in names})
    _drop_broker_pools()
    try:
        yield
    finally:
        _drop_broker_pools()
        conf.update(saved)


# --- the webhook receiver ---------------------------------------------------------------------


def signed_headers(secret: str, body: bytes, webhook_id: str | None = None) -> dict[str, str]:
    message_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, message_id, now, body),
    }


def raw_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The signature of any bytes, UTF-8 or not (what a hostile sender can compute)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def post_webhook(
    url: str, secret: str, payload: dict[str, Any], webhook_id: str | None = None
) -> requests.Response:
    body = json.dumps(payload).encode()
    return requests.post(
        f"{url}/webhooks/resends",
        data=body,
        headers=signed_headers(secret, body, webhook_id),
        timeout=30,
    )


# --- what happened ----------------------------------------------------------------------------


def records(request_ids: list[str]) -> list[ResendRecord | None]:
    return [get_resend(request_id) for request_id in request_ids]


def all_final(request_ids: list[str]) -> list[ResendRecord] | None:
    """The records once every request is final, else None (for `wait_for`)."""
    try:
        found = records(request_ids)
    except redis.RedisError:
        return None
    if all(r is not None and r.status.is_final for r in found):
        return [r for r in found if r is not None]
    return None


def resend_calls(control: SandboxControl, order: str | None = None) -> list[dict[str, Any]]:
    """The sandbox's resend calls (of one order), in arrival order."""
    calls = [c for c in control.calls() if c["path"].endswith("/resends")]
    if order is not None:
        calls = [c for c in calls if c["referenceOrderID"] == order]
    return sorted(calls, key=lambda c: c["received_at"])


def accepted_sends(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls Tango acted on: a 201, or a reset/stall after processing (status logged)."""
    return [c for c in calls if c["status"] is not None and 200 <= c["status"] < 300]


def windows_respected(calls: list[dict[str, Any]], window: float) -> list[str]:
    """Problems with one order's calls: a cooldown refusal of our making, or two resends
    inside a window. A probe (the prompt second call after an ambiguous one, marked
    `X-Tango-Resend-Probe`) is meant to meet Tango's cooldown: that answer is its proof."""
    problems = [
        f"cooldown refusal at {c['received_at']:.3f}"
        for c in calls
        if c["i18nKey"] == "403.005" and not c.get("probe")
    ]
    sends = accepted_sends(calls)
    for previous, current in itertools.pairwise(sends):
        gap = current["received_at"] - previous["received_at"]
        if gap < window:
            problems.append(f"two resends {gap:.3f}s apart (window {window}s)")
    return problems


def wait_all_final(request_ids: list[str], timeout: float) -> list[ResendRecord]:
    """`all_final` with a deadline; on timeout, say where each unfinished request stands."""
    try:
        return wait_for(
            lambda: all_final(request_ids), timeout=timeout, interval=0.1, what="all final"
        )
    except AssertionError:
        stuck = [
            (r.id, r.reference_order_id, r.status.value, r.attempts, r.reason, r.next_attempt_at)
            for r in records(request_ids)
            if r is not None and not r.status.is_final
        ]
        raise AssertionError(f"not final after {timeout}s: {stuck}") from None
