"""The `tango-resend` command line."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from worker.settings import ConfigurationError, Settings, get_settings

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"tango-resend: {message}", err=True)
    sys.exit(code)


def _settings_or_exit() -> Settings:
    try:
        return get_settings()
    except ConfigurationError as error:
        _fail(str(error), EXIT_BAD_INPUT)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Resend Tango reward orders, one per order per window, never early, never lost."""


@cli.command()
@click.option(
    "--pool",
    type=click.Choice(["threads", "prefork", "solo"]),
    default="threads",
    show_default=True,
    help="Celery pool; calls to Tango are I/O-bound.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 512),
    default=None,
    help="Parallel tasks (default: WORKER_CONCURRENCY).",
)
@click.option("--loglevel", "-l", default=None, help="Log level (default: LOG_LEVEL).")
@click.option("--hostname", "-n", default=None, help="Celery node name.")
def worker(pool: str, concurrency: int | None, loglevel: str | None, hostname: str | None) -> None:
    """Run a Celery worker that executes queued resends."""
    settings = _settings_or_exit()
    try:
        settings.require_tango_credentials()
    except ConfigurationError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    from worker.celery_app import app

    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--loglevel={loglevel or settings.log_level}",
        f"--queues={settings.resend_queue}",
        # Gossip and mingle only slow start-up; workers coordinate through Redis keys.
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


@cli.command()
@click.argument("order_id")
@click.option("--email", "new_email", default=None, help="Resend to this address.")
@click.option("--mobile", "new_mobile", default=None, help="Resend to this E.164 number.")
@click.option("--etid", "new_etid", default=None, help="Email template id, e.g. E000000.")
@click.option(
    "--delivery-method", "new_delivery_method", default=None, help="EMAIL, PHONE or NONE."
)
@click.option(
    "--key",
    "idempotency_key",
    default=None,
    help="Idempotency key: the same key within 24 h returns the first request's id.",
)
def enqueue(order_id: str, **fields: Any) -> None:
    """Queue a resend of ORDER_ID and print the request id."""
    _settings_or_exit()
    from worker.producer import EnqueueError, enqueue_resend
    from worker.validation import InvalidResendRequest

    try:
        request_id = enqueue_resend(order_id, **fields)
    except InvalidResendRequest as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except EnqueueError as error:
        _fail(str(error), 3)
    click.echo(request_id)


@cli.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def status(request_id: str, as_json: bool) -> None:
    """Show a request's state."""
    _settings_or_exit()
    from worker.producer import get_resend

    record = get_resend(request_id)
    if record is None:
        _fail(f"no request {request_id!r} (unknown or expired)", EXIT_NOT_FOUND)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return
    rows = {
        "id": record.id,
        "order": record.reference_order_id,
        "status": record.status.value,
        "attempts": record.attempts,
        "created_at": record.created_at.isoformat(),
        "sent_at": record.sent_at.isoformat() if record.sent_at else "-",
        "next_attempt_at": record.next_attempt_at.isoformat() if record.next_attempt_at else "-",
        "reason": record.reason or "-",
        "tango_request_ids": ", ".join(record.tango_request_ids) or "-",
    }
    width = max(len(name) for name in rows)
    for name, value in rows.items():
        click.echo(f"{name.ljust(width)}  {value}")


@cli.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cancel(request_id: str, as_json: bool) -> None:
    """Cancel a queued or deferred request before it is sent."""
    _settings_or_exit()
    from worker.producer import cancel_resend

    result = cancel_resend(request_id)
    if as_json:
        click.echo(json.dumps({"id": request_id, "result": result}))
    messages = {
        "cancelled": "cancelled",
        "unknown": f"no request {request_id!r} (unknown or expired)",
        "in_flight": "too late: its call to Tango is under way",
    }
    message = messages.get(result, f"not cancelled: the request is already {result}")
    if result == "cancelled":
        if not as_json:
            click.echo(message)
        return
    if as_json:
        sys.exit(EXIT_NOT_FOUND if result == "unknown" else EXIT_BAD_INPUT)
    _fail(message, EXIT_NOT_FOUND if result == "unknown" else EXIT_BAD_INPUT)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="uvicorn worker processes.",
)
def web(host: str, port: int, workers: int) -> None:
    """Run the webhook receiver (POST /webhooks/resends)."""
    settings = _settings_or_exit()
    try:
        settings.require_webhook_secret()
    except ConfigurationError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    import uvicorn

    from worker.redaction import install_redaction

    install_redaction()
    uvicorn.run(
        "worker.web:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        server_header=False,
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
@click.option(
    "--cooldown",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between resends of one order.",
)
@click.option("--platform-name", default="sandbox-platform", show_default=True)
@click.option("--platform-key", default="sandbox-key", show_default=True)
@click.option("--client-id", default="sandbox-client", show_default=True)
@click.option("--client-secret", default="sandbox-secret", show_default=True)
@click.option(
    "--rate-limit",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Calls per second accepted before answering 429 (0 = no limit).",
)
@click.option(
    "--token-ttl",
    "token_ttl_seconds",
    type=click.IntRange(1),
    default=86400,
    show_default=True,
    help="Lifetime of issued OAuth tokens, in seconds.",
)
@click.option(
    "--clock-offset",
    "clock_offset_seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds the simulated Tango clock runs ahead.",
)
@click.option(
    "--last-sent-format",
    type=click.Choice(["iso", "iso-seconds", "epoch-ms", "java", "garbage"]),
    default="iso",
    show_default=True,
    help="How the cooldown error renders the last resend's time.",
)
@click.option("--order", "orders", multiple=True, help="Create this order at start (repeatable).")
def sandbox(host: str, port: int, cooldown: float, orders: tuple[str, ...], **options: Any) -> None:
    """Run the bundled Tango simulator on loopback (development and tests only)."""
    from worker.sandbox.server import main_serve

    main_serve(host, port, cooldown, orders=list(orders), **options)


@cli.command()
@click.option(
    "--cooldown",
    type=float,
    default=3.0,
    show_default=True,
    help="The window used by the demo's sandbox and worker, in seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(cooldown: float, as_json: bool) -> None:
    """Run the sandbox, a worker and a few resends, and show what happens."""
    from worker.demo import run_demo

    summary = run_demo(window_seconds=cooldown)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    sys.exit(EXIT_OK if summary["ok"] else 1)


def main() -> None:
    cli(prog_name="tango-resend")
