"""Who asked for a request: the one structured field (`ResendRecord.origin`) every interface
fills in the same words, so `history`, the REST API, the console and the callbacks can say it.

    webhook <webhook-id>    api <token name>    console <agent>     cli <user@host>
    bulk <file>:<row>       recovery <range>    retry of <id>       python <origin given>
"""

from __future__ import annotations

import getpass
import socket

MAX_ORIGIN_CHARS = 200


def _bounded(text: str) -> str:
    # An origin is shown on one line everywhere: no control characters, bounded length.
    cleaned = "".join(char if char.isprintable() else "?" for char in text)
    return cleaned[:MAX_ORIGIN_CHARS]


def webhook(webhook_id: str | None) -> str:
    return _bounded(f"webhook {webhook_id}" if webhook_id else "webhook unsigned")


def api(token_name: str) -> str:
    return _bounded(f"api {token_name}")


def console(agent: str) -> str:
    return _bounded(f"console {agent}")


def cli_user() -> str:
    """`user@host` of the shell running the CLI."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname() or 'unknown'}"


def cli() -> str:
    return _bounded(f"cli {cli_user()}")


def bulk(file_name: str, row: int) -> str:
    return _bounded(f"bulk {file_name}:{row}")


def recovery(span: str) -> str:
    return _bounded(f"recovery {span}")


def retry_of(request_id: str) -> str:
    return _bounded(f"retry of {request_id}")


def python(given: str | None) -> str:
    return _bounded(f"python {given}" if given else "python")
