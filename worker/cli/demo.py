"""`tango-resend demo`: the whole system on loopback, watched live, then summarised.

It starts the bundled sandbox and a real worker process, enqueues a few resends (two for one
order, one for an unknown order, one invalid request), prints each state change as it happens,
and checks that the second resend of the same order went out one window after the first.
Everything it starts or stores is removed at the end; its Redis keys and queue are its own, so
it can run beside a real deployment on the same Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import redis

from worker.core.settings import get_settings, reset_settings_cache
from worker.resend.producer import enqueue_resend, get_resend
from worker.resend.validation import InvalidResendRequest
from worker.runtime import current_runtime, reset_runtime
from worker.sandbox import SandboxControl, SandboxServer
from worker.state.records import ResendRecord, ResendStatus

KNOWN_ORDER = "RA251125-1001-01"
UNKNOWN_ORDER = "RA251125-9999-99"
_PLATFORM = ("demo-platform", "demo-key-" + uuid.uuid4().hex[:8])


def run_demo(window_seconds: float = 3.0) -> dict[str, Any]:
    """Run the demo and return its summary (`ok` tells whether every check held)."""
    tag = uuid.uuid4().hex[:8]
    with ExitStack() as cleanup, tempfile.TemporaryDirectory(prefix="tango-resend-demo-") as tmp:
        sandbox = SandboxServer(
            cooldown_seconds=window_seconds, platform_name=_PLATFORM[0], platform_key=_PLATFORM[1]
        ).start()
        cleanup.callback(sandbox.stop)
        control = SandboxControl(sandbox.control_url)
        control.add_order(KNOWN_ORDER, email="pat.recipient@example.com")
        _say(f"sandbox: Tango simulator on {sandbox.base_url}, window {window_seconds:g}s")

        env = _demo_environment(sandbox.base_url, window_seconds, tag)
        os.environ.update(env)
        cleanup.callback(_forget_environment, env)
        reset_settings_cache()
        reset_runtime()
        cleanup.callback(_delete_demo_keys, f"tango-resend-demo-{tag}")

        worker = _start_worker(Path(tmp) / "worker.log", f"tango-resend-demo-{tag}")
        cleanup.callback(_stop_worker, worker)
        _say("worker: started a Celery worker process (pool=threads)")

        requests_made = _enqueue_examples()
        records = _watch(requests_made, timeout=6 * window_seconds + 30)
        return _summarise(requests_made, records, control.calls(), window_seconds)


def _demo_environment(base_url: str, window_seconds: float, tag: str) -> dict[str, str]:
    return {
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        "REDIS_KEY_PREFIX": f"tango-resend-demo-{tag}",
        "RESEND_QUEUE": f"tango-resend-demo-{tag}",
        "TANGO_BASE_URL": base_url,
        "TANGO_PLATFORM_NAME": _PLATFORM[0],
        "TANGO_PLATFORM_KEY": _PLATFORM[1],
        "RESEND_COOLDOWN_SECONDS": f"{window_seconds:g}",
        # Tango's 1 call/s guidance would make the demo's short window wait for rate slots.
        "TANGO_RATE_LIMIT": "10",
        "TANGO_TIMEOUT_SECONDS": "5",
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": "60",
    }


def _forget_environment(env: dict[str, str]) -> None:
    for name in env:
        os.environ.pop(name, None)
    reset_settings_cache()
    reset_runtime()


def _start_worker(log_path: Path, name: str) -> subprocess.Popen[bytes]:
    # Its node name carries the demo's tag, so its broker bindings can be told apart at the end.
    arguments = ["worker", "--concurrency=4", "--loglevel=INFO", f"--hostname={name}@%h"]
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while " ready." not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise click.ClickException("the worker did not start:\n" + log_path.read_text())
        time.sleep(0.05)
    return process


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _enqueue_examples() -> list[tuple[str, str]]:
    """(label, request id) for each accepted request; the invalid one is shown refused."""
    made = []
    for label, order, email in (
        ("first resend", KNOWN_ORDER, "pat.recipient@example.com"),
        ("second resend, same order", KNOWN_ORDER, "pat.other@example.org"),
        ("unknown order", UNKNOWN_ORDER, None),
    ):
        request_id = enqueue_resend(order, new_email=email)
        made.append((label, request_id))
        _say(f"enqueue: {label:<27} {order} -> request {request_id[:8]}")
    try:
        enqueue_resend("RA251125-1001-01/../admin", new_email="not-an-email")
    except InvalidResendRequest as error:
        _say(f"enqueue: invalid request refused, nothing stored: {error}")
        made.append(("invalid request", ""))
    return made


def _watch(made: list[tuple[str, str]], timeout: float) -> dict[str, ResendRecord]:
    started = time.monotonic()
    seen: dict[str, tuple[str, int]] = {}
    records: dict[str, ResendRecord] = {}
    ids = [request_id for _, request_id in made if request_id]
    while time.monotonic() - started < timeout:
        for request_id in ids:
            record = get_resend(request_id)
            if record is None:
                continue
            records[request_id] = record
            state = (record.status.value, record.attempts)
            if seen.get(request_id) != state:
                seen[request_id] = state
                detail = f" ({record.reason})" if record.reason else ""
                _say(
                    f"  +{time.monotonic() - started:6.2f}s  {request_id[:8]} "
                    f"{record.reference_order_id} {record.status.value:<8} "
                    f"calls={record.attempts}{detail}"
                )
        if len(records) == len(ids) and all(r.status.is_final for r in records.values()):
            break
        time.sleep(0.05)
    return records


def _summarise(
    made: list[tuple[str, str]],
    records: dict[str, ResendRecord],
    calls: list[dict[str, Any]],
    window_seconds: float,
) -> dict[str, Any]:
    outcome = {
        label: records[rid].status.value if rid in records else "refused"
        for label, rid in made
        if rid
    }
    outcome["invalid request"] = "refused at enqueue"
    sent = sorted((c for c in calls if c.get("status") == 201), key=lambda c: c["received_at"])
    cooldowns = [c for c in calls if c.get("i18nKey") == "403.005"]
    gap = sent[1]["received_at"] - sent[0]["answered_at"] if len(sent) >= 2 else None
    ok = (
        outcome.get("first resend") == ResendStatus.SENT
        and outcome.get("second resend, same order") == ResendStatus.SENT
        and outcome.get("unknown order") == ResendStatus.FAILED
        and gap is not None
        and gap >= window_seconds
        and not cooldowns
    )
    _say("")
    _say("summary")
    for label, status in outcome.items():
        _say(f"  {label:<27} {status}")
    _say(
        f"  calls to Tango               {len(calls)} ({len(sent)} resent, "
        f"{len(cooldowns)} cooldown errors)"
    )
    if gap is not None:
        _say(
            f"  second resend of {KNOWN_ORDER} went out {gap:.3f}s after Tango answered the "
            f"first (window {window_seconds:g}s): never early, {gap - window_seconds:.3f}s late"
        )
    _say("demo OK" if ok else "demo FAILED: see above")
    return {
        "ok": ok,
        "outcome": outcome,
        "gap_seconds": gap,
        "window_seconds": window_seconds,
        "tango_calls": len(calls),
        "cooldown_errors": len(cooldowns),
    }


def _delete_demo_keys(marker: str) -> None:
    """Delete the demo's keys, and its rows in the broker's binding tables.

    Kombu keeps `_kombu.binding.<exchange>` sets (and `_kombu.binding_deadlines`) without a
    TTL, shared by every Celery app on this Redis: only rows naming the demo's queue or node
    (both carry `marker`) are taken out, and a table is deleted only once it is empty.
    """
    client = current_runtime().redis
    settings = get_settings()
    for pattern in (f"{settings.redis_key_prefix}:*", f"{settings.resend_queue}*"):
        for key in client.scan_iter(match=pattern, count=500):
            client.delete(key)
    tables = list(client.scan_iter(match="_kombu.binding*", count=500))
    _drop_binding_rows(client, tables, marker)
    # After the rows: a deadline is dropped once its binding table is gone.
    _drop_deadlines_of_gone_tables(client, tables)


def _drop_binding_rows(client: redis.Redis, tables: list[str], marker: str) -> None:
    """Take the rows naming `marker` out of kombu's binding sets; delete a set left empty."""
    for key in tables:
        if client.type(key) != "set":
            continue
        # A row is routing key, pattern and queue, joined by kombu's separator.
        rows = [str(row) for row in client.smembers(key)]
        mine = [row for row in rows if marker in row.rsplit("\x06\x16", 1)[-1]]
        if mine:
            client.srem(key, *mine)
            if client.scard(key) == 0:
                client.delete(key)


def _drop_deadlines_of_gone_tables(client: redis.Redis, tables: list[str]) -> None:
    """Deadlines of binding tables that no longer exist keep nothing alive: take them out of
    `_kombu.binding_deadlines`, and delete it once empty."""
    for key in tables:
        if client.type(key) != "zset":
            continue
        names = [str(name) for name in client.zrange(key, 0, -1)]
        gone = [name for name in names if not client.exists(f"_kombu.binding.{name}")]
        if gone:
            client.zrem(key, *gone)
            if client.zcard(key) == 0:
                client.delete(key)


def _say(line: str) -> None:
    click.echo(line)
