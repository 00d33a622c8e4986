"""The `tango-resend` command line."""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from worker.cli.cmd_doctor import doctor
from worker.cli.cmd_enqueue import enqueue
from worker.cli.cmd_requests import COMMANDS as REQUEST_COMMANDS
from worker.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXITS_SERVE,
    TangoResendGroup,
    fail,
    redacted_url,
    settings_or_exit,
)
from worker.core.settings import Settings

# The orders the sandbox knows when none are given: the ones the README's examples use.
SANDBOX_ORDERS = ("RA251125-1001-01", "RA251125-1001-02")
HOST_HELP = "Address to listen on (0.0.0.0: every interface)."
Command = TypeVar("Command", bound=Callable[..., Any])


@click.group(
    cls=TangoResendGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExit codes: 0 ok, 1 not found, 2 bad input, 3 Redis or the broker unavailable"
    " (each command's --help says which apply).",
)
@click.version_option(package_name="tango-resend", prog_name="tango-resend")
def cli() -> None:
    """Resend Tango reward orders, one per order per window, never early, never lost."""


@cli.command(epilog=EXITS_SERVE)
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
    settings = settings_or_exit(Settings.require_tango_credentials)
    _wait_for_redis(settings)
    from worker.queueing.app import app

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
    # Celery prefers a configured pool to `--pool=prefork` (it cannot tell that from its
    # default): configure the one asked for.
    app.conf.worker_pool = pool
    app.worker_main(argv)


@cli.command(epilog=EXITS_SERVE)
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="uvicorn worker processes.",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Also log one access line per HTTP request (each accepted webhook already logs one "
    "line naming its request; access logs usually come from the proxy in front).",
)
def web(host: str, port: int, workers: int, access_log: bool) -> None:
    """Run the webhook receiver (POST /webhooks/resends)."""
    settings = settings_or_exit(Settings.require_webhook_secret)
    if settings.web_internal_port == port:
        fail(
            f"WEB_INTERNAL_PORT must differ from --port ({port}): the internal port keeps the "
            "console, the REST API, docs and metrics off the public one",
            EXIT_BAD_INPUT,
        )
    _warn_if_redis_silent(settings)
    from worker.web.server import serve

    serve(settings, host, port, workers, access_log)


def _wait_for_redis(settings: Settings, longest_pause: float = 5.0) -> None:
    """Start only once Redis answers, saying at every try what is awaited and why, instead of
    Celery's silent minutes of connection retries."""
    import redis

    from worker.state.connection import redis_client

    pause = 1.0
    with redis_client(settings) as client:  # closed on the way out
        while True:
            try:
                client.ping()
                return
            except redis.RedisError as error:
                click.echo(
                    f"tango-resend worker: waiting for Redis at {redacted_url(settings)} "
                    f"(REDIS_URL): {error}; trying again in {pause:.0f} s",
                    err=True,
                )
            time.sleep(pause)
            pause = min(pause * 2, longest_pause)


def _warn_if_redis_silent(settings: Settings) -> None:
    """Say at start when Redis does not answer: the receiver still starts (it answers 503
    until Redis is back), but nobody should have to guess why."""
    import redis

    from worker.state.connection import redis_client

    with redis_client(settings) as client:
        try:
            client.ping()
        except redis.RedisError as error:
            click.echo(
                f"tango-resend: warning: Redis does not answer at {redacted_url(settings)} "
                f"({error}); webhooks get 503 and /healthz reports it until it does",
                err=True,
            )


def _accepted_credential(
    flag: str, default: str, what: str, variable: str
) -> Callable[[Command], Command]:
    """A `sandbox` option: a credential the sandbox accepts, and the worker's variable that
    must hold the same value."""
    return click.option(
        flag, default=default, show_default=True, help=f"{what} it accepts ({variable})."
    )


@cli.command(epilog=EXITS_SERVE)
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", type=int, default=8765, show_default=True, help="Port to listen on.")
@click.option(
    "--cooldown",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between resends of one order.",
)
@_accepted_credential(
    "--platform-name", "sandbox-platform", "HTTP Basic user", "TANGO_PLATFORM_NAME"
)
@_accepted_credential("--platform-key", "sandbox-key", "HTTP Basic password", "TANGO_PLATFORM_KEY")
@_accepted_credential("--client-id", "sandbox-client", "OAuth client id", "TANGO_CLIENT_ID")
@_accepted_credential(
    "--client-secret", "sandbox-secret", "OAuth client secret", "TANGO_CLIENT_SECRET"
)
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
@click.option(
    "--order",
    "orders",
    metavar="ORDER_ID",
    multiple=True,
    help=f"Create this order at start (repeatable; default: {', '.join(SANDBOX_ORDERS)}).",
)
def sandbox(host: str, port: int, cooldown: float, orders: tuple[str, ...], **options: Any) -> None:
    """Run the bundled Tango simulator on loopback (development and tests only)."""
    from worker.sandbox.server import main_serve

    main_serve(host, port, cooldown, orders=list(orders or SANDBOX_ORDERS), **options)


@cli.command(epilog="\b\nExit codes: 0 the demo went as expected, 1 it did not.")
@click.option(
    "--cooldown",
    "window_seconds",  # the flag's name is public; it sets the sandbox's cooldown and our window
    type=float,
    default=3.0,
    show_default=True,
    help="The window used by the demo's sandbox and worker, in seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(window_seconds: float, as_json: bool) -> None:
    """Run the sandbox, a worker and a few resends, and show what happens."""
    from worker.cli.demo import run_demo

    summary = run_demo(window_seconds=window_seconds)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    sys.exit(EXIT_OK if summary["ok"] else 1)


@cli.command(name="gen-secret", epilog="\b\nExit codes: 0 ok.")
def gen_secret() -> None:
    """Print a new random webhook secret (whsec_ + base64 of 32 random bytes).

    For WEBHOOK_SECRET and RESULT_WEBHOOK_SECRET, e.g.
    `echo "WEBHOOK_SECRET=$(tango-resend gen-secret)" >> .env`.
    """
    click.echo(new_webhook_secret())


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 bytes from the OS's CSPRNG."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


cli.add_command(enqueue)
cli.add_command(doctor)
for command in REQUEST_COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="tango-resend")
