"""What every `tango-resend` command shares: exit codes, settings, durations, output."""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta
from typing import Any, NoReturn

import click

from worker.settings import ConfigurationError, Settings, get_settings

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"tango-resend: {message}", err=True)
    sys.exit(code)


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except ConfigurationError as error:
        fail(str(error), EXIT_BAD_INPUT)


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
