"""Start a Procfile's processes with honcho, for `make run` and `make run-dev`.

Why not `honcho start -e .env` alone: honcho lets its env file override the shell, so
`REDIS_URL=... make run-dev` would check one Redis and run every process against another.
Here the environment is built in the order pydantic-settings itself uses, lowest first:

    dev defaults (--dev only) < the env file (.env or .env.example) < the shell

and a shell variable that overrides the file is named on stderr. The virtualenv's `bin/` goes
first on PATH, so the Procfiles' `tango-resend` is found with nothing activated.

With --dev:
- no WEBHOOK_SECRET from the file or the shell: a secret is made once and kept in
  `.run/dev-webhook-secret` (git-ignored; .run/ is), so the README's signed examples read it;
- no API_TOKEN: a token is made once and kept in `.run/dev-api-token` the same way, so the
  REST API and the console are on, as the README's examples expect;
- with .env.example (no .env of your own), TANGO_BASE_URL is the sandbox's unless the shell
  sets it (.env.example's own is Tango's integration host, for docker compose and `make run`);
- SANDBOX_PORT moves the sandbox, and a loopback TANGO_BASE_URL with it unless the shell set it;
- the processes' settings are written to `.run/dev.env` (`export NAME=value` lines), so
  `. .run/dev.env` gives another shell's CLI (`tango-resend doctor`, `status`) the same ones.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
DEV_SECRET_FILE = Path(".run") / "dev-webhook-secret"
DEV_TOKEN_FILE = Path(".run") / "dev-api-token"
DEV_ENV_FILE = Path(".run") / "dev.env"
# Where Procfile.dev's sandbox listens unless SANDBOX_PORT says otherwise.
DEFAULT_SANDBOX_PORT = "8765"


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (optionally quoted); comments and blank lines ignored.

    An empty value (`WEBHOOK_SECRET=`) counts as unset, as it does for the settings.
    """
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        name, _, raw = stripped.partition("=")
        name = name.strip().removeprefix("export ").strip()
        parts = shlex.split(raw, comments=True) if raw.strip() else []
        value = parts[0] if parts else ""
        if name.isidentifier() and value:
            values[name] = value
    return values


def dev_webhook_secret(root: Path) -> str:
    """The local development secret: made once, then read back."""
    return _kept(
        root / DEV_SECRET_FILE,
        lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
    )


def dev_api_token(root: Path) -> str:
    """The local development API token (43 characters, over the 32 required): made once,
    then read back."""
    return _kept(root / DEV_TOKEN_FILE, lambda: secrets.token_urlsafe(32))


def _kept(path: Path, make: Callable[[], str]) -> str:
    """A value kept in a file only its owner can read: made once, then read back."""
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def _follow_sandbox_port(environment: dict[str, str], shell: Mapping[str, str]) -> str | None:
    """With SANDBOX_PORT set, point a TANGO_BASE_URL at the sandbox's default port (from the
    env file, not the shell) at the port it moved to; the note to print, or None."""
    port = environment.get("SANDBOX_PORT")
    url = environment.get("TANGO_BASE_URL", "")
    if not port or port == DEFAULT_SANDBOX_PORT or "TANGO_BASE_URL" in shell:
        return None
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port != int(DEFAULT_SANDBOX_PORT):
        return None
    environment["TANGO_BASE_URL"] = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))
    return f"TANGO_BASE_URL follows SANDBOX_PORT: {environment['TANGO_BASE_URL']}"


def write_dev_env(root: Path, environment: Mapping[str, str], names: set[str]) -> Path:
    """`.run/dev.env`: `export NAME=value` for every setting the processes get, so that
    `. .run/dev.env` gives another shell's CLI the same ones. Only its owner can read it."""
    path = root / DEV_ENV_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"export {name}={shlex.quote(value)}"
        for name, value in sorted(environment.items())
        if name in names
    ]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("# Written by make run-dev: the settings of its processes.\n")
        handle.write("\n".join(lines) + "\n")
    return path


def build_environment(
    env_file: Path, shell: Mapping[str, str], *, dev: bool, root: Path, venv_bin: Path
) -> tuple[dict[str, str], list[str]]:
    """The processes' environment and the notes to print (shell overrides, secret source)."""
    from_file = read_env_file(env_file)
    notes = [
        f"{name} from your shell overrides {env_file.name}"
        for name, value in sorted(from_file.items())
        if name in shell and shell[name] != value
    ]
    environment = {**from_file, **shell}
    if dev and not environment.get("WEBHOOK_SECRET"):
        environment["WEBHOOK_SECRET"] = dev_webhook_secret(root)
        notes.append(f"WEBHOOK_SECRET is the local development secret in {DEV_SECRET_FILE}")
    if dev and not environment.get("API_TOKEN"):
        environment["API_TOKEN"] = dev_api_token(root)
        notes.append(
            f"API_TOKEN (REST API and console) is the local development token in {DEV_TOKEN_FILE}"
        )
    if dev and env_file.name == ".env.example" and "TANGO_BASE_URL" not in shell:
        port = environment.get("SANDBOX_PORT") or DEFAULT_SANDBOX_PORT
        environment["TANGO_BASE_URL"] = f"http://127.0.0.1:{port}/raas/v2"
        notes.append(f"TANGO_BASE_URL is the bundled sandbox: {environment['TANGO_BASE_URL']}")
    elif dev and (note := _follow_sandbox_port(environment, shell)) is not None:
        notes.append(note)
    environment["PATH"] = os.pathsep.join([str(venv_bin), shell.get("PATH", os.defpath)])
    return environment, notes


def _setting_names(env_file: Path) -> set[str]:
    """The settings' variable names: every one the env file sets or shows commented out, and
    the settings model's own when the package can be imported."""
    text = env_file.read_text(encoding="utf-8")
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    try:
        from worker.core.settings import Settings
    except ImportError:  # run by a Python without the package: the file's names will do
        return names
    return names | {name.upper() for name in Settings.model_fields}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", required=True)
    parser.add_argument("--env-file", required=True, type=Path)
    parser.add_argument("--dev", action="store_true", help="make a local webhook secret if none")
    args = parser.parse_args(argv)
    venv_bin = Path(sys.executable).parent
    environment, notes = build_environment(
        args.env_file, os.environ, dev=args.dev, root=ROOT, venv_bin=venv_bin
    )
    if args.dev:
        web_port = environment.get("WEB_PORT", "8000")
        names = _setting_names(args.env_file) | {"API_TOKEN", "WEBHOOK_SECRET", "TANGO_BASE_URL"}
        dev_env = write_dev_env(ROOT, environment, names)
        notes += [
            f"the receiver: http://127.0.0.1:{web_port} (webhooks at /webhooks/resends, REST API"
            f" at /resends, console at http://127.0.0.1:{web_port}/console)",
            f"the CLI in another shell: . {dev_env.relative_to(ROOT)} && tango-resend doctor",
        ]
    for note in notes:
        print(f"run: {note}", file=sys.stderr)
    honcho = str(venv_bin / "honcho")
    # -e /dev/null: the environment is already complete; honcho must not re-apply a file.
    # -p: honcho hands the first process PORT (the Procfile's web: 8000 unless PORT is set).
    base_port = environment.get("PORT", "8000")
    command = [honcho, "start", "-f", args.procfile, "-e", os.devnull, "-p", base_port]
    os.execve(honcho, command, environment)


if __name__ == "__main__":
    main()
