"""The CLI's surface without Redis: --version, --help texts, gen-secret, one time format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import click
import pytest
from click.testing import CliRunner

from worker.cli.common import timestamp
from worker.cli.entry import cli
from worker.core.settings import Settings
from worker.state.records import ResendRecord

COMMANDS = sorted(cli.commands)


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("tango-resend, version ")


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_every_help_ends_with_its_exit_codes(name: str) -> None:
    result = run(*([name] if name else []), "--help")
    assert result.exit_code == 0
    last = result.stdout.strip().splitlines()[-1].strip()
    assert last.startswith("Exit codes: 0 "), result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_a_description(name: str) -> None:
    command = cli.commands[name]
    undocumented = [
        parameter.name
        for parameter in command.params
        if isinstance(parameter, click.Option) and not parameter.help
    ]
    assert undocumented == []


@pytest.mark.parametrize("name", ["history", "list", "sandbox", "enqueue"])
def test_the_order_is_named_order_id_everywhere(name: str) -> None:
    help_text = run(name, "--help").stdout
    assert "ORDER_ID" in help_text
    assert " ORDER " not in help_text and "[--order O]" not in help_text


def test_gen_secret_prints_a_fresh_secret_the_settings_accept() -> None:
    first, second = run("gen-secret"), run("gen-secret")
    assert first.exit_code == second.exit_code == 0
    secret = first.stdout.strip()
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 44  # 32 bytes
    assert secret != second.stdout.strip()
    settings = Settings(webhook_secret=secret)  # type: ignore[arg-type]
    assert settings.webhook_secret is not None


def test_one_time_format_for_text_and_json() -> None:
    """Text output prints times exactly as the records' JSON does (UTC, `Z`)."""
    for moment in (
        datetime(2026, 11, 25, 23, 13, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 25, 23, 13, tzinfo=UTC),
    ):
        record = ResendRecord(
            id="x", reference_order_id="RA251125-1001-01", created_at=moment, updated_at=moment
        )
        assert timestamp(moment) == record.model_dump(mode="json")["created_at"]
    assert timestamp(datetime(2026, 11, 26, 0, 13, tzinfo=timezone(timedelta(hours=1)))) == (
        "2026-11-25T23:13:00Z"
    )
    assert timestamp(None) == "-"


def test_the_sandbox_knows_the_readme_orders_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.sandbox import server

    started: dict[str, object] = {}
    monkeypatch.setattr(server, "main_serve", lambda *args, **kwargs: started.update(kwargs))
    assert run("sandbox").exit_code == 0
    assert started["orders"] == ["RA251125-1001-01", "RA251125-1001-02"]
    assert run("sandbox", "--order", "RA251125-7-7").exit_code == 0
    assert started["orders"] == ["RA251125-7-7"]
