"""Docker is not on our machines, so the deployment files are checked against the code here:
every command parses with the real CLI, every variable is a real setting and is documented."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from worker.cli.entry import cli
from worker.core.settings import Settings

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


def test_configuration_page_lists_every_setting() -> None:
    """docs/configuration.md's table names every setting; the README's short table names only
    real ones and links to the full one."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    table = text.split("| variable | default | meaning |", 1)[1]
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert listed >= SETTING_NAMES, f"not in docs/configuration.md: {SETTING_NAMES - listed}"
    readme = (ROOT / "README.md").read_text()
    short = readme.split("### Settings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in short.splitlines() if line.startswith("| `")]
    first_cells = [re.findall(r"^\| ([^|]+) \|", row)[0] for row in rows]
    named = {name for cell in first_cells for name in cell.split("`")[1::2]}
    assert named and named <= SETTING_NAMES, f"not settings: {named - SETTING_NAMES}"
    assert "docs/configuration.md" in short


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
    # .env.example serves docker compose too: no loopback address, which inside a container
    # reaches nothing. `make run-dev` points its processes at its sandbox itself.
    host = urlsplit(example["TANGO_BASE_URL"]).hostname
    assert host not in ("127.0.0.1", "localhost", "::1"), example["TANGO_BASE_URL"]
    spec = importlib.util.spec_from_file_location("run_procfile", ROOT / "scripts/run_procfile.py")
    assert spec is not None and spec.loader is not None
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    with tempfile.TemporaryDirectory() as folder:
        environment, _ = launcher.build_environment(
            ROOT / ".env.example", {}, dev=True, root=Path(folder), venv_bin=Path(folder)
        )
    assert environment["TANGO_BASE_URL"] == f"http://127.0.0.1:{sandbox_port}/raas/v2"


def option_value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_compose_services_and_redis_persistence() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "sandbox", "worker", "web", *HA_SERVICES}
    redis = services["redis"]
    assert option_value(redis["command"], "--appendonly") == "yes"
    assert option_value(redis["command"], "--maxmemory-policy") == "noeviction"
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


def test_compose_points_the_apps_at_its_own_redis() -> None:
    services = compose()["services"]
    for name in ("worker", "web"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_compose_passes_every_setting_of_the_env_file_to_worker_and_web() -> None:
    """Given .env (a copy of .env.example), when compose starts worker and web, then every
    variable in it reaches them: `env_file`, not a hand-picked list that can fall behind."""
    services = compose()["services"]
    for name in ("worker", "web"):
        assert services[name]["env_file"] == [".env"]
        overridden = set(services[name]["environment"])
        decided = {"REDIS_URL", "WEBHOOK_SECRET", "WEB_INTERNAL_PORT"}
        assert overridden <= decided, "only what compose itself decides"


def test_compose_keeps_the_office_port_on_the_hosts_loopback() -> None:
    """The internal port (console, REST API, docs, metrics) is published on 127.0.0.1 only;
    the public port serves webhooks and /healthz."""
    web = compose()["services"]["web"]
    internal = web["environment"]["WEB_INTERNAL_PORT"]
    assert f"127.0.0.1:{internal}:{internal}" in web["ports"]
    assert not any(port.endswith(f":{internal}") and port.count(":") == 1 for port in web["ports"])


def test_compose_sandbox_is_an_opt_in_profile_nothing_depends_on() -> None:
    services = compose()["services"]
    assert services["sandbox"]["profiles"] == ["sandbox"]
    for name in ("redis", "worker", "web"):
        assert "profiles" not in services[name]
        assert "sandbox" not in services[name].get("depends_on", {})
    sandbox_port = parse_command(services["sandbox"]["command"]).params["port"]
    assert f"http://sandbox:{sandbox_port}/raas/v2" in (ROOT / ".env.example").read_text()


@pytest.mark.parametrize("service", ["sandbox", "worker", "web"])
def test_compose_environment_names_are_settings_and_documented(service: str) -> None:
    names = set(compose()["services"][service].get("environment", {}))
    assert names <= SETTING_NAMES
    assert names <= documented_names()


HA_SERVICES = (
    "redis-primary",
    "redis-replica",
    "sentinel-1",
    "sentinel-2",
    "sentinel-3",
    "worker-ha",
    "web-ha",
)


def test_compose_ha_profile_is_opt_in_and_points_the_apps_at_its_sentinels() -> None:
    """`docker compose --profile ha up worker-ha web-ha`: a primary, a replica and three
    Sentinels monitoring it under the name the apps ask for; nothing else depends on them."""
    services = compose()["services"]
    for name in HA_SERVICES:
        assert services[name]["profiles"] == ["ha"], name
    for name in ("redis", "worker", "web", "sandbox"):
        assert not set(services[name].get("depends_on", {})) & set(HA_SERVICES), name
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :] == ["redis-primary", "6379"]
    for name in ("redis-primary", "redis-replica"):
        command = services[name]["command"]
        assert option_value(command, "--appendonly") == "yes"
        assert option_value(command, "--maxmemory-policy") == "noeviction"
    for name in ("worker-ha", "web-ha"):
        service = services[name]
        parse_command(service["command"])
        environment = service["environment"]
        settings = Settings(
            redis_url=environment["REDIS_URL"],
            redis_sentinel_master=environment["REDIS_SENTINEL_MASTER"],
        )
        target = settings.redis_target
        assert target.sentinels == tuple((f"sentinel-{n}", 26379) for n in (1, 2, 3))
        assert set(service["depends_on"]) == {"sentinel-1", "sentinel-2", "sentinel-3"}
        assert set(environment) <= SETTING_NAMES and set(environment) <= documented_names()
        for number in (1, 2, 3):
            script = services[f"sentinel-{number}"]["command"][-1]
            assert "'port 26379'" in script
            assert (
                f"'sentinel monitor {settings.redis_sentinel_master} redis-primary 6379 2'"
                in script
            )
    web = services["web-ha"]
    port = parse_command(web["command"]).params["port"]
    assert f"8001:{port}" in web["ports"]


def test_compose_requires_a_webhook_secret_and_has_no_default() -> None:
    environment = compose()["services"]["web"]["environment"]
    assert re.fullmatch(
        r"\$\{WEBHOOK_SECRET:\?[^}]*gen-secret[^}]*\}", environment["WEBHOOK_SECRET"]
    )


def test_env_example_leaves_the_webhook_secret_empty_and_says_how_to_make_one() -> None:
    text = (ROOT / ".env.example").read_text()
    assert re.search(r"^WEBHOOK_SECRET=$", text, flags=re.MULTILINE)
    assert "tango-resend gen-secret" in text


def working_secrets(text: str) -> list[str]:
    """Every `whsec_...` in `text` that the settings would accept as a secret."""
    found = []
    for candidate in re.findall(r"whsec_[A-Za-z0-9+/=_-]*", text):
        try:
            Settings(webhook_secret=candidate)  # type: ignore[arg-type]
        except ValueError:
            continue
        found.append(candidate)
    return found


@pytest.mark.parametrize(
    "name", ["README.md", "docker-compose.yml", ".env.example", "Procfile", "Procfile.dev"]
)
def test_no_deployment_file_or_readme_holds_a_working_webhook_secret(name: str) -> None:
    assert working_secrets((ROOT / name).read_text()) == []
    assert "ZGV2ZWxvcG1lbnQtb25seS1zZWNyZXQtY2hhbmdlLW1l" not in (ROOT / name).read_text()


def test_procfile_dev_serves_the_receiver_on_8000_whatever_honcho_sets_port_to() -> None:
    """honcho gives each process its own PORT (5100 for the second); the README's examples
    use http://localhost:8000, so Procfile.dev does not read PORT."""
    web = procfile("Procfile.dev")["web"]
    assert "PORT:-" not in web.replace("WEB_PORT:-", "")
    assert parse_command(shlex.split(expand_defaults(web))).params["port"] == 8000


@pytest.mark.parametrize("target", ["run", "run-dev"])
def test_make_run_targets_go_through_the_launcher(target: str) -> None:
    """The launcher puts .venv/bin on PATH and lets the shell win over the env file."""
    text = (ROOT / "Makefile").read_text()
    recipe = text.split(f"\n{target}: ", 1)[1].split("\n\n", 1)[0]
    assert "scripts/run_procfile.py" in recipe and "honcho start" not in recipe


def test_dockerfile_installs_the_package_pinned_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "uv export --frozen --no-dev" in text
    # The base install is the producer's; the image runs workers and receivers.
    assert "--extra worker --extra web" in text
    assert re.search(r"pip install --require-hashes --no-deps -r \S+", text)
    assert re.search(r"pip install --no-deps \.", text)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_the_readme_commands_install_from_the_lock_file() -> None:
    """`make demo`, `make test` and CI all go through one venv recipe, which syncs uv.lock
    with --locked: a lock that no longer matches pyproject.toml fails instead of re-resolving."""
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\n$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "sync --locked" in recipe and "pip install" not in recipe
    for target in ("demo", "test"):
        assert "$(STAMP)" in text.split(f"\n{target}: ", 1)[1].split("\n", 1)[0]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    lock = (ROOT / "uv.lock").read_text()
    assert lock.count("hash = ") > 100


def test_readme_examples_use_the_orders_the_dev_sandbox_knows() -> None:
    """The README's examples, run against `make run-dev`, name orders its sandbox has (an
    unknown one fails with 404), and `tango-resend sandbox` knows them by default too."""
    from worker.cli.entry import SANDBOX_ORDERS

    text = (ROOT / "README.md").read_text()
    usage = text.split("## Using it\n", 1)[1].split("\n## Operating it", 1)[0]
    webhooks = text.split("## Webhooks\n", 1)[1].split("\n## Deployment", 1)[0]
    named = set(re.findall(r"RA\d{6}-\d+-\d+", usage + webhooks))
    dev_sandbox = parse_command(shlex.split(expand_defaults(procfile("Procfile.dev")["sandbox"])))
    assert named and named <= set(dev_sandbox.params["orders"])
    assert set(SANDBOX_ORDERS) == set(dev_sandbox.params["orders"])


def test_compose_worker_and_web_have_healthchecks_that_match_their_commands() -> None:
    """The web's healthcheck asks /healthz on the port it listens on; the worker's pings its
    own Celery node (celery@hostname, Celery's default name) with a command Celery parses."""
    services = compose()["services"]
    web = services["web"]
    port = parse_command(web["command"]).params["port"]
    web_check = web["healthcheck"]["test"]
    assert web_check[:2] == ["CMD", "python"]
    assert f"http://127.0.0.1:{port}/healthz" in web_check[-1]
    compile(web_check[-1], "healthcheck", "exec")
    kind, command = services["worker"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    argv = shlex.split(command.replace("$$HOSTNAME", "host"))
    assert argv[:5] == ["celery", "-A", "worker", "inspect", "ping"]
    assert option_value(argv, "--destination") == "celery@host"
    assert "--hostname" not in services["worker"]["command"], "the default node name is pinged"
    for name in ("worker", "web"):
        check = services[name]["healthcheck"]
        assert check["timeout"] and check["interval"] and check["retries"] >= 1
