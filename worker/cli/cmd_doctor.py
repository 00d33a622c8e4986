"""`tango-resend doctor`: check Redis, the queue, Tango, the clocks and the settings."""

from __future__ import annotations

import sys

import click

from worker.cli.common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    echo_json,
    fail,
    redacted_url,
    settings_or_exit,
)

EXIT_CHECK_FAILED = 1


@click.command(
    epilog="\b\nExit codes: 0 all well, 1 a check failed, 2 bad configuration, 3 Redis unreachable."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "checks": [...]} as JSON.')
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 30),
    default=1.0,
    show_default=True,
    help="Seconds to wait for workers to say which queues they consume.",
)
def doctor(as_json: bool, timeout: float) -> None:
    """Check a deployment: Redis (reachable, version, eviction policy, persistence, latency),
    the queue (depth, consumers), Tango (reachable, credentials accepted: one cheap
    authenticated read that resends nothing and takes a rate-limit slot), this host's clock
    against Redis and Tango, and the effective settings (secrets masked)."""
    settings = settings_or_exit()
    from worker.cli.doctor import RedisUnreachable, run_checks
    from worker.runtime import current_runtime

    try:
        checks = run_checks(current_runtime(), inspect_timeout=timeout)
    except RedisUnreachable as error:
        if as_json:
            detail = f"Redis does not answer at {redacted_url(settings)}: {error}"
            echo_json({"ok": False, "checks": [{"name": "redis", "ok": False, "detail": detail}]})
            sys.exit(EXIT_UNAVAILABLE)
        fail(f"Redis does not answer at {redacted_url(settings)} ({error})", EXIT_UNAVAILABLE)
    ok = all(check.ok for check in checks)
    if as_json:
        echo_json({"ok": ok, "checks": [check.as_json() for check in checks]})
    else:
        width = max(len(check.name) for check in checks)
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            click.echo(f"{mark}  {check.name.ljust(width)}  {check.detail}")
        click.echo("all well" if ok else "some checks failed")
    sys.exit(EXIT_OK if ok else EXIT_CHECK_FAILED)
