"""Docker is not on our machines, so the deployment files are checked against the code here:
every command parses with the real CLI, every variable is a real setting and is documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from worker.cli import cli
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def procfile(name: str) -> dict[str, str]:
    entries = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            process, command = line.split(":", 1)
            entries[process.strip()] = command.strip()
    return entries


def parse_command(argv: list[str]) -> click.Context:
    """Parse a `tango-resend ...` command line with the real CLI, without running it."""
    assert argv[0] == "tango-resend"
    command = cli.commands[argv[1]]
    return command.make_context(argv[1], argv[2:])


def expand_defaults(command: str) -> str:
    return re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", command)


def documented_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    assert documented_names() == SETTING_NAMES


def test_procfile_has_web_and_worker_and_no_sandbox() -> None:
    entries = procfile("Procfile")
    assert set(entries) == {"web", "worker"}
    for command in entries.values():
        parse_command(shlex.split(expand_defaults(command)))


def test_procfile_dev_adds_the_sandbox() -> None:
    entries = procfile("Procfile.dev")
    assert set(entries) == {"web", "worker", "sandbox"}
    contexts = {name: parse_command(shlex.split(expand_defaults(c))) for name, c in entries.items()}
    sandbox_port = contexts["sandbox"].params["port"]
    example = dict(
        re.findall(r"^([A-Z_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.MULTILINE)
    )
    assert example["TANGO_BASE_URL"] == f"http://127.0.0.1:{sandbox_port}/raas/v2"


def test_compose_services_and_redis_persistence() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "sandbox", "worker", "web"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    for name in ("worker", "web"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", ["sandbox", "worker", "web"])
def test_compose_commands_parse_with_the_cli(service: str) -> None:
    parse_command(compose()["services"][service]["command"])


def test_compose_publishes_the_port_the_web_listens_on() -> None:
    web = compose()["services"]["web"]
    port = parse_command(web["command"]).params["port"]
    assert f"{port}:{port}" in web["ports"]


def test_compose_points_the_apps_at_its_own_redis_and_sandbox() -> None:
    services = compose()["services"]
    sandbox_port = parse_command(services["sandbox"]["command"]).params["port"]
    for name in ("worker", "web"):
        environment = services[name]["environment"]
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert expand_defaults(environment["TANGO_BASE_URL"]) == (
            f"http://sandbox:{sandbox_port}/raas/v2"
        )


@pytest.mark.parametrize("service", ["sandbox", "worker", "web"])
def test_compose_environment_names_are_settings_and_documented(service: str) -> None:
    names = set(compose()["services"][service].get("environment", {}))
    assert names <= SETTING_NAMES
    assert names <= documented_names()


def test_compose_web_has_a_webhook_secret_the_settings_accept() -> None:
    environment = compose()["services"]["web"]["environment"]
    secret = expand_defaults(environment["WEBHOOK_SECRET"])
    Settings(webhook_secret=secret)  # type: ignore[arg-type]


def test_dockerfile_installs_the_package_pinned_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install --constraint constraints.txt \.", text)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert (ROOT / "constraints.txt").read_text().count("==") >= 10
