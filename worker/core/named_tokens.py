"""`API_TOKENS`: named bearer tokens, so the audit trail can say which agent asked.

The setting is a list of `name:token:role` entries (separated by commas, spaces or new lines),
or the path of a file holding them, one a line (`#` starts a comment). Roles are `write` (may
read and act) and `read` (may only read). `API_TOKEN` and `API_READ_TOKEN` keep working as the
tokens named `default` and `read`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

ROLES = ("write", "read")
DEFAULT_NAME = "default"  # API_TOKEN's name
READ_NAME = "read"  # API_READ_TOKEN's name
# Short enough that "console <name>" fits the record's audit field (worker/resend/origins.py).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,39}$")


@dataclass(frozen=True)
class NamedToken:
    """One agent's token: its name (in the audit trail), its secret and its role."""

    name: str
    token: SecretStr
    role: str

    def __repr__(self) -> str:  # the secret never appears, not even masked by length
        return f"NamedToken(name={self.name!r}, role={self.role!r})"


def looks_like_a_file(value: str) -> bool:
    """A value naming a file rather than listing entries (entries always hold a colon)."""
    return ":" not in value or value.startswith(("/", "./", "~"))


def read_entries(value: str) -> str:
    """The entries `API_TOKENS` stands for: its own text, or the file it names."""
    if not looks_like_a_file(value):
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"names the file {str(path)!r}, which cannot be read ({error})") from None


def parse_named_tokens(text: str, min_length: int) -> tuple[NamedToken, ...]:
    """Every entry of `text`, checked; the error names the entry (by position and name, never
    by its token).

    Raises:
        ValueError: an entry is malformed, a name or token repeats, a role is unknown, or a
            token is shorter than `min_length`.
    """
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    entries = [entry for line in lines for entry in re.split(r"[,\s]+", line) if entry]
    tokens: list[NamedToken] = []
    for position, entry in enumerate(entries, start=1):
        name, _, rest = entry.partition(":")
        secret, colon, role = rest.rpartition(":")
        where = f"entry {position} ({name!r})" if _NAME.match(name) else f"entry {position}"
        if not colon or not secret:
            raise ValueError(f"{where}: must be name:token:role")
        if not _NAME.match(name):
            raise ValueError(f"{where}: a name is 1 to 40 letters, digits, or _ . @ -")
        if role not in ROLES:
            raise ValueError(f"{where}: the role must be write or read, not {role!r}")
        if len(secret) < min_length:
            raise ValueError(f"{where}: the token must be at least {min_length} characters")
        tokens.append(NamedToken(name, SecretStr(secret), role))
    if not tokens:
        raise ValueError("lists no token (name:token:role)")
    check_unique(tokens)
    return tuple(tokens)


def check_unique(tokens: list[NamedToken] | tuple[NamedToken, ...]) -> None:
    """Names and tokens must each be unique: a token must name exactly one agent."""
    names: set[str] = set()
    secrets: set[str] = set()
    for token in tokens:
        if token.name in names:
            raise ValueError(f"the name {token.name!r} is given twice")
        if token.token.get_secret_value() in secrets:
            raise ValueError(f"the token of {token.name!r} is also another name's token")
        names.add(token.name)
        secrets.add(token.token.get_secret_value())
