"""What every `tango-resend` command shares: exit codes, settings, durations, output."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

import click

from worker.core.settings import ConfigurationError, Settings, get_settings
from worker.core.times import rfc3339

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3

# The last paragraph of each command's --help (`\b` keeps click from rewrapping it).
EXITS_LOOKUP = "\b\nExit codes: 0 ok, 1 not found, 2 bad input, 3 Redis unavailable."
EXITS_CHANGE = (
    "\b\nExit codes: 0 ok, 1 not found, 2 bad input or not possible in its state,"
    " 3 Redis unavailable."
)
EXITS_SERVE = "\b\nExit codes: 0 stopped cleanly, 2 bad configuration."

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"tango-resend: {message}", err=True)
    sys.exit(code)


def settings_or_exit(*requirements: Callable[[Settings], None]) -> Settings:
    """This process's settings, or exit 2 naming what is missing or invalid, including what
    any of `requirements` (e.g. `Settings.require_webhook_secret`) refuses."""
    try:
        settings = get_settings()
        for require in requirements:
            require(settings)
    except ConfigurationError as error:
        fail(str(error), EXIT_BAD_INPUT)
    return settings


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, `1h30m`, `1w`."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 15m, 2h, 1d or 1h30m")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except click.BadParameter as error:
            self.fail(error.message, param, ctx)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def timestamp(value: datetime | None) -> str:
    """One form for every time the CLI prints, text or JSON: RFC 3339 in UTC with `Z`
    (what the records' JSON holds)."""
    return "-" if value is None else rfc3339(value)


def unavailable(error: BaseException) -> NoReturn:
    """Exit 3 with one line naming the problem (never a traceback)."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    fail(f"Redis is unavailable ({detail}); check REDIS_URL and that Redis runs", EXIT_UNAVAILABLE)


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean Redis (the broker and all state) cannot be reached."""
    import kombu.exceptions
    import redis

    from worker.resend.producer import RedisUnavailable

    return (RedisUnavailable, redis.RedisError, kombu.exceptions.OperationalError)


class TangoResendGroup(click.Group):
    """The command group: a command that meets an unreachable Redis exits 3 with one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            if isinstance(error, unavailable_errors()):
                unavailable(error)
            raise


def redacted_url(settings: Settings) -> str:
    """REDIS_URL without its password, for messages (`RedisTarget.redacted`: Sentinel and
    socket forms too)."""
    return settings.redis_target.redacted()
