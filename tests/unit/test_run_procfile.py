"""scripts/run_procfile.py: the environment `make run` and `make run-dev` give their processes."""

from __future__ import annotations

import importlib.util
import stat
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from worker.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_procfile", ROOT / "scripts/run_procfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env.example"
    path.write_text(
        "# a comment\n"
        "REDIS_URL=redis://localhost:6379/0\n"
        "LOG_LEVEL=INFO\n"
        "WEBHOOK_SECRET=\n"
        "# API_TOKEN=commented-out\n"
        "QUOTED='a b'  # trailing comment\n"
    )
    return path


def test_the_shell_wins_over_the_env_file_and_is_named(env_file: Path, tmp_path: Path) -> None:
    """Given REDIS_URL in the shell and in the file, the processes get the shell's and a note
    names the override (honcho alone would silently give them the file's)."""
    shell = {"REDIS_URL": "redis://127.0.0.1:6390/3", "PATH": "/usr/bin:/bin"}
    environment, notes = launcher().build_environment(
        env_file, shell, dev=False, root=tmp_path, venv_bin=tmp_path / "venv/bin"
    )
    assert environment["REDIS_URL"] == "redis://127.0.0.1:6390/3"
    assert environment["LOG_LEVEL"] == "INFO"
    assert environment["QUOTED"] == "a b"
    assert "WEBHOOK_SECRET" not in environment and "API_TOKEN" not in environment
    assert notes == ["REDIS_URL from your shell overrides .env.example"]


def test_the_virtualenv_comes_first_on_path(env_file: Path, tmp_path: Path) -> None:
    environment, _ = launcher().build_environment(
        env_file, {"PATH": "/usr/bin:/bin"}, dev=False, root=tmp_path, venv_bin=Path("/v/bin")
    )
    assert environment["PATH"] == "/v/bin:/usr/bin:/bin"


def test_dev_makes_one_local_secret_the_settings_accept_and_keeps_it(
    env_file: Path, tmp_path: Path
) -> None:
    module = launcher()
    first, notes = module.build_environment(
        env_file, {}, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    again, _ = module.build_environment(env_file, {}, dev=True, root=tmp_path, venv_bin=tmp_path)
    secret = first["WEBHOOK_SECRET"]
    assert secret == again["WEBHOOK_SECRET"], "kept across runs, so senders can read it"
    Settings(webhook_secret=secret)  # type: ignore[arg-type]
    kept = tmp_path / ".run/dev-webhook-secret"
    assert kept.read_text().strip() == secret
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert any(".run/dev-webhook-secret" in note for note in notes)


def test_a_secret_from_the_shell_is_used_as_is(env_file: Path, tmp_path: Path) -> None:
    shell = {"WEBHOOK_SECRET": "whsec_fromshell", "API_TOKEN": "t" * 40}
    environment, _ = launcher().build_environment(
        env_file, shell, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    assert environment["WEBHOOK_SECRET"] == "whsec_fromshell"
    assert not (tmp_path / ".run").exists()


def test_dot_run_is_git_ignored() -> None:
    assert ".run/" in (ROOT / ".gitignore").read_text().splitlines()


def test_dev_makes_one_local_api_token_the_settings_accept_and_names_it(
    env_file: Path, tmp_path: Path
) -> None:
    """Given no API_TOKEN, run-dev makes one (the REST API and console are then on, as the
    README's examples expect), keeps it for the next run, and says where it is."""
    module = launcher()
    first, notes = module.build_environment(
        env_file, {}, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    again, _ = module.build_environment(env_file, {}, dev=True, root=tmp_path, venv_bin=tmp_path)
    token = first["API_TOKEN"]
    assert token == again["API_TOKEN"] and len(token) >= 32
    assert Settings(api_token=token).api_token is not None  # type: ignore[arg-type]
    kept = tmp_path / ".run/dev-api-token"
    assert kept.read_text().strip() == token
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert any(".run/dev-api-token" in note for note in notes)
    from_shell, _ = module.build_environment(
        env_file, {"API_TOKEN": "t" * 40}, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    assert from_shell["API_TOKEN"] == "t" * 40


def test_sandbox_port_moves_tango_base_url_unless_the_shell_set_it(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"  # your own, pointing at the sandbox's default port
    env_file.write_text("TANGO_BASE_URL=http://127.0.0.1:8765/raas/v2\n")
    module = launcher()
    moved, notes = module.build_environment(
        env_file, {"SANDBOX_PORT": "9123"}, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    assert moved["TANGO_BASE_URL"] == "http://127.0.0.1:9123/raas/v2"
    assert any("follows SANDBOX_PORT" in note for note in notes)
    shell = {"SANDBOX_PORT": "9123", "TANGO_BASE_URL": "http://127.0.0.1:9999/raas/v2"}
    kept, _ = module.build_environment(env_file, shell, dev=True, root=tmp_path, venv_bin=tmp_path)
    assert kept["TANGO_BASE_URL"] == "http://127.0.0.1:9999/raas/v2", "the shell wins"
    plain, _ = module.build_environment(env_file, {}, dev=True, root=tmp_path, venv_bin=tmp_path)
    assert plain["TANGO_BASE_URL"] == "http://127.0.0.1:8765/raas/v2"


def test_dev_env_gives_another_shell_the_same_settings(env_file: Path, tmp_path: Path) -> None:
    """`. .run/dev.env` in bash exports exactly the processes' settings, quoting kept."""
    module = launcher()
    environment, _ = module.build_environment(
        env_file, {"PATH": "/usr/bin:/bin"}, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    path = module.write_dev_env(tmp_path, environment, {"REDIS_URL", "QUOTED", "API_TOKEN"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = subprocess.run(
        ["bash", "-c", f'. {path} && printf "%s|%s|%s" "$REDIS_URL" "$QUOTED" "$API_TOKEN"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    assert shown == f"redis://localhost:6379/0|a b|{environment['API_TOKEN']}"
    assert "PATH" not in path.read_text()


def test_with_env_example_run_dev_talks_to_its_sandbox(tmp_path: Path) -> None:
    """.env.example's TANGO_BASE_URL is Tango's (it serves docker compose too); run-dev with it
    talks to its own sandbox, on SANDBOX_PORT when set, unless the shell says otherwise."""
    env_file = tmp_path / ".env.example"
    env_file.write_text("TANGO_BASE_URL=https://integration-api.tangocard.com/raas/v2\n")
    module = launcher()
    plain, notes = module.build_environment(
        env_file, {}, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    assert plain["TANGO_BASE_URL"] == "http://127.0.0.1:8765/raas/v2"
    assert any("bundled sandbox" in note for note in notes)
    moved, _ = module.build_environment(
        env_file, {"SANDBOX_PORT": "9124"}, dev=True, root=tmp_path, venv_bin=tmp_path
    )
    assert moved["TANGO_BASE_URL"] == "http://127.0.0.1:9124/raas/v2"
    shell = {"TANGO_BASE_URL": "http://127.0.0.1:9999/raas/v2"}
    own, _ = module.build_environment(env_file, shell, dev=True, root=tmp_path, venv_bin=tmp_path)
    assert own["TANGO_BASE_URL"] == "http://127.0.0.1:9999/raas/v2"
    not_dev, _ = module.build_environment(env_file, {}, dev=False, root=tmp_path, venv_bin=tmp_path)
    assert not_dev["TANGO_BASE_URL"] == "https://integration-api.tangocard.com/raas/v2"
