"""`tango-resend` run in this process (click's runner), and reading what it printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner, Result

from worker.cli.entry import cli
from worker.core.settings import reset_settings_cache
from worker.runtime import reset_runtime

# run(*args): `tango-resend ARGS...` in this process, with the environment the test set.
CliRun = Callable[..., Result]


def in_process_cli() -> CliRun:
    runner = CliRunner()

    def run(*args: str) -> Result:
        # Each command starts as a fresh process would: settings read again, new runtime.
        reset_settings_cache()
        reset_runtime()
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return run


def json_out(result: Result) -> Any:
    """The command's stdout as JSON, with its whole output in the message if it is not."""
    assert result.stdout.strip(), f"no stdout; stderr: {result.stderr!r}"
    return json.loads(result.stdout)


def explain(result: Result) -> str:
    return f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
