"""Start a Procfile's processes with honcho, for `make run` and `make run-dev`.

Why not `honcho start -e .env` alone: honcho lets its env file override the shell, so
`REDIS_URL=... make run-dev` would check one Redis and run every process against another.
Here the environment is built in the order pydantic-settings itself uses, lowest first:

    dev defaults (--dev only) < the env file (.env or .env.example) < the shell

and a shell variable that overrides the file is named on stderr. The virtualenv's `bin/` goes
first on PATH, so the Procfiles' `tango-resend` is found with nothing activated.

With --dev and no WEBHOOK_SECRET from the file or the shell, a secret is made once and kept in
`.run/dev-webhook-secret` (git-ignored; .run/ is), so the README's signed examples can read it.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_SECRET_FILE = Path(".run") / "dev-webhook-secret"


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
    path = root / DEV_SECRET_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
    return secret


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
    environment["PATH"] = os.pathsep.join([str(venv_bin), shell.get("PATH", os.defpath)])
    return environment, notes


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
