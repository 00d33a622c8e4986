"""Fixtures for the operating features: the CLI in-process, real workers, the sandbox, Redis.

The integration fixtures are re-exported here (pytest only sees fixtures of conftests on a
test's own path): `sandbox`, `control`, `settings_env` and `start_worker`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.integration.conftest import (  # noqa: F401
    control,
    sandbox,
    settings_env,
    start_worker,
)
from worker.cli.entry import cli
from worker.core.settings import reset_settings_cache
from worker.resend.producer import get_resend
from worker.runtime import reset_runtime
from worker.state.records import ResendRecord

pytestmark = pytest.mark.integration

CliRun = Callable[..., Result]


@pytest.fixture
def run_cli() -> CliRun:
    """`tango-resend ARGS...` in this process, with the environment the test set."""
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


def finished(request_ids: list[str]) -> list[ResendRecord] | None:
    """The records once every request is final, else None (a probe for `wait_for`)."""
    records = [get_resend(request_id) for request_id in request_ids]
    if all(record is not None and record.status.is_final for record in records):
        return [record for record in records if record is not None]
    return None
