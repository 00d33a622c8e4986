"""Who asked for a request: the one structured field (`ResendRecord.origin`) every interface
fills in the same words, so `history`, the REST API, the console and the callbacks can say it.

    webhook <webhook-id>    api <token name>    console <agent>     cli <user@host>
    bulk <file>:<row>       recovery <range>    retry of <id>       python <origin given>
"""

from __future__ import annotations

import getpass
import socket

# Kept whole in a field of the record's hash, which stays compact only with small values
# (worker/state/record_codec.py, AUDIT_VALUE_MAX_BYTES).
MAX_ORIGIN_BYTES = 60
_ELLIPSIS = "…"


def bounded(text: str) -> str:
    """One printable line of at most MAX_ORIGIN_BYTES in UTF-8; a longer one keeps its start
    and its end (a file's row number, an id's order) around an ellipsis."""
    cleaned = "".join(char if char.isprintable() else "?" for char in text)
    if len(cleaned.encode()) <= MAX_ORIGIN_BYTES:
        return cleaned
    budget = MAX_ORIGIN_BYTES - len(_ELLIPSIS.encode())
    head, tail = cleaned[: len(cleaned) // 2], cleaned[len(cleaned) // 2 :]
    while len((head + tail).encode()) > budget:
        if len(head.encode()) >= len(tail.encode()):
            head = head[:-1]
        else:
            tail = tail[1:]
    return head + _ELLIPSIS + tail


def webhook(webhook_id: str | None) -> str:
    return bounded(f"webhook {webhook_id}" if webhook_id else "webhook unsigned")


def api(token_name: str) -> str:
    return bounded(f"api {token_name}")


def console(agent: str) -> str:
    return bounded(f"console {agent}")


def cli_user() -> str:
    """`user@host` of the shell running the CLI."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname() or 'unknown'}"


def cli() -> str:
    return bounded(f"cli {cli_user()}")


def bulk(file_name: str, row: int) -> str:
    return bounded(f"bulk {file_name}:{row}")


def recovery(span: str) -> str:
    return bounded(f"recovery {span}")


def retry_of(request_id: str) -> str:
    return bounded(f"retry of {request_id}")


def python(given: str | None) -> str:
    return bounded(f"python {given}" if given else "python")
