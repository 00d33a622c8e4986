"""What `REDIS_URL` names: one Redis (`redis://`, `rediss://`, `unix://`) or a set managed by
Sentinel, in kombu's spelling (`sentinel://[:password@]host:port[;sentinel://host:port...][/db]`).

Parsed once, at settings time, so that a mistyped URL is a clear error naming the variable
before any process starts, and so that every Redis client of a process (the broker's, the
state's, the web receiver's asyncio one) is built from the same reading of it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from worker.core.errors import TangoResendError

DIRECT_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_REDIS_PORT = 6379

# The TLS query parameters kombu and redis-py read from a URL; anything else in a query is a
# mistake we would otherwise ignore silently.
_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "cert_required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "cert_optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "cert_none": ssl.CERT_NONE,
}
_TLS_QUERY = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")


class RedisUrlError(TangoResendError, ValueError):
    """Raised when `REDIS_URL` cannot be read; the message never repeats a password."""


@dataclass(frozen=True)
class TlsOptions:
    """How a TLS connection checks the server: a CA file, or the system's CAs when None."""

    ca_file: str | None = None
    cert_reqs: ssl.VerifyMode = ssl.CERT_REQUIRED
    cert_file: str | None = None
    key_file: str | None = None

    def redis_kwargs(self) -> dict[str, object]:
        """redis-py's `SSLConnection` arguments (kombu's `broker_use_ssl` takes the same)."""
        options: dict[str, object] = {"ssl_cert_reqs": self.cert_reqs}
        if self.ca_file:
            options["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            options["ssl_certfile"] = self.cert_file
        if self.key_file:
            options["ssl_keyfile"] = self.key_file
        return options


@dataclass(frozen=True)
class RedisTarget:
    """The Redis a process talks to, read from `REDIS_URL`."""

    scheme: str
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    # A direct Redis: where it is (a Unix socket's path in `host` for `unix://`).
    host: str = "127.0.0.1"
    port: int = DEFAULT_REDIS_PORT
    # Sentinel: every sentinel, in the order given (redis-py asks them in turn).
    sentinels: tuple[tuple[str, int], ...] = ()
    tls: TlsOptions | None = None

    @property
    def is_sentinel(self) -> bool:
        return self.scheme == SENTINEL_SCHEME

    def redacted(self) -> str:
        """The URL without its password, for messages and `doctor`."""
        auth = f"{self.username or ''}:***@" if self.password else ""
        if self.username and not self.password:
            auth = f"{self.username}@"
        if self.is_sentinel:
            nodes = ";".join(f"sentinel://{auth}{host}:{port}" for host, port in self.sentinels)
            return f"{nodes}/{self.db}"
        if self.scheme == "unix":
            return f"unix://{auth}{self.host}?db={self.db}"
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{self.db}"


def parse_redis_url(url: str, *, tls_ca_file: str | None = None) -> RedisTarget:
    """Read `REDIS_URL`; `tls_ca_file` (REDIS_TLS_CA_FILE) is the CA for `rediss://` unless
    the URL names one (`?ssl_ca_certs=`).

    Raises:
        RedisUrlError: the URL is not one of the accepted forms.
    """
    text = url.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == SENTINEL_SCHEME:
        return _parse_sentinel(text)
    if scheme not in DIRECT_SCHEMES:
        raise RedisUrlError(
            "must start with redis://, rediss:// (TLS), unix:// or sentinel:// "
            "(sentinel://host:port;sentinel://host:port/db)"
        )
    if ";" in text:
        raise RedisUrlError("only sentinel:// URLs may list several hosts separated by ';'")
    parts = _split(text)
    query = _query(parts.query)
    tls = None
    if scheme == "rediss":
        tls = _tls_options(query, tls_ca_file)
    elif any(name in query for name in _TLS_QUERY):
        raise RedisUrlError(f"ssl_* parameters need rediss://, not {scheme}://")
    db = _db(parts.path if scheme != "unix" else "", query)
    if scheme == "unix":
        if not parts.path:
            raise RedisUrlError("unix:// needs the socket's path: unix:///run/redis.sock?db=0")
        return RedisTarget(
            scheme,
            db=db,
            username=_unquoted(parts.username),
            password=_unquoted(parts.password),
            host=parts.path,
            port=0,
        )
    host, port = _host_port(parts, DEFAULT_REDIS_PORT)
    return RedisTarget(
        scheme,
        db=db,
        username=_unquoted(parts.username),
        password=_unquoted(parts.password),
        host=host,
        port=port,
        tls=tls,
    )


def _parse_sentinel(text: str) -> RedisTarget:
    nodes = [node.strip() for node in text.split(";") if node.strip()]
    sentinels: list[tuple[str, int]] = []
    username = password = None
    db: int | None = None
    for node in nodes:
        if not node.lower().startswith("sentinel://"):
            raise RedisUrlError("every host of a sentinel URL must be sentinel://host:port")
        parts = _split(node)
        if parts.query:
            raise RedisUrlError("a sentinel URL takes no ?parameters")
        sentinels.append(_host_port(parts, DEFAULT_SENTINEL_PORT))
        if parts.password is not None or parts.username:
            # kombu's spelling puts the (data nodes') password on the first host; accept it on
            # any, but one password for all.
            given = (_unquoted(parts.username), _unquoted(parts.password))
            if (username, password) not in ((None, None), given):
                raise RedisUrlError("the sentinel hosts name different passwords")
            username, password = given
        if parts.path not in ("", "/"):
            node_db = _db(parts.path, {})
            if db is not None and node_db != db:
                raise RedisUrlError("the sentinel hosts name different databases")
            db = node_db
    if not sentinels:
        raise RedisUrlError("a sentinel URL needs at least one sentinel://host:port")
    return RedisTarget(
        SENTINEL_SCHEME,
        db=db or 0,
        username=username,
        password=password,
        sentinels=tuple(sentinels),
    )


def _split(text: str) -> SplitResult:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise RedisUrlError("has a port that is not a number") from None
    return parts


def _host_port(parts: SplitResult, default_port: int) -> tuple[str, int]:
    host = parts.hostname
    if not host:
        raise RedisUrlError("names no host")
    port = parts.port
    return str(host), int(port or default_port)


def _query(query: str) -> dict[str, str]:
    values = {name: items[-1] for name, items in parse_qs(query).items()}
    unknown = sorted(set(values) - {*_TLS_QUERY, "db"})
    if unknown:
        raise RedisUrlError(
            f"unknown parameter(s) {', '.join(unknown)}; accepted: db and, for rediss://, "
            + ", ".join(_TLS_QUERY)
        )
    return values


def _tls_options(query: dict[str, str], tls_ca_file: str | None) -> TlsOptions:
    reqs_text = query.get("ssl_cert_reqs", "required").lower()
    if reqs_text not in _CERT_REQS:
        raise RedisUrlError("ssl_cert_reqs must be required, optional or none")
    return TlsOptions(
        ca_file=query.get("ssl_ca_certs") or tls_ca_file,
        cert_reqs=_CERT_REQS[reqs_text],
        cert_file=query.get("ssl_certfile"),
        key_file=query.get("ssl_keyfile"),
    )


def _db(path: str, query: dict[str, str]) -> int:
    text = path.strip("/") or query.get("db", "0")
    if not text.isdigit():
        raise RedisUrlError(f"database must be a number, not {text!r}")
    return int(text)


def _unquoted(value: str | None) -> str | None:
    return None if value is None or value == "" else unquote(value)
