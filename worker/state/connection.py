"""Every Redis client of a process is built here, from `REDIS_URL` as `RedisTarget` reads it.

One place means one behaviour for a failover and for TLS: the state's client, the web
receiver's asyncio client and the broker (`worker.queueing.transport`, which takes its Sentinel
and TLS options from `broker_options`) all ask the sentinels for the primary on each new
connection, and all verify a TLS server against the same CAs.

With Sentinel, a client's connections come from redis-py's `SentinelConnectionPool`: each
connection asks the sentinels where the primary is when it connects, a connection to a server
that has become a replica (`READONLY`) is dropped, and a dropped connection reconnects to the
primary the sentinels name then. So after a failover each process finds the new primary on its
next command, without a restart; commands in between fail like any lost connection.
"""

from __future__ import annotations

import ssl
from typing import Any

import redis
import redis.asyncio as redis_asyncio
import redis.asyncio.sentinel as async_sentinel
import redis.sentinel as sync_sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.retry import Retry

from worker.core.redis_url import RedisTarget
from worker.core.settings import Settings

# Bounded timeouts, so a dead Redis fails a call rather than hanging it. A primary cut off by a
# partition keeps a connection open and silent: each command on it waits the whole socket
# timeout before it is retried on the new primary, so this bounds how late a process follows
# such a failover. None of our commands blocks on Redis's side (the scheduler's pub/sub reads
# wait at most a second).
CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "health_check_interval": 15,
    # Timeouts are retried too: `retry` (below) retries TimeoutError as well as lost
    # connections.
}

# A sentinel that does not answer is skipped for the next one: a short wait for each, so a
# dead sentinel costs a second, not a data node's ten.
SENTINEL_NODE_OPTIONS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 1}


# One retry at once, as redis-py gives a client with `retry_on_timeout` (its other default,
# ten tries with backoff, would hold a webhook for seconds before its 503 while Redis is down):
# a dropped connection is reopened (to the new primary, under Sentinel) and the command sent
# again; anything longer is the caller's retry (a 503, `EnqueueError`, a run that runs again).
RETRIES = 1


def worth_retrying(error: Exception) -> bool:
    """Whether a connection error may pass by retrying: a refused or dropped connection may
    (a restart, a failover), a refused password or certificate never does. redis-py counts
    both as `ConnectionError` and would retry them for seconds, nested in its reconnects."""
    if isinstance(error, AuthenticationError):
        return False
    cause = error.__cause__ or error.__context__
    return not isinstance(cause, ssl.SSLCertVerificationError)


def _retry() -> Retry:
    return Retry(NoBackoff(), RETRIES, is_retryable=worth_retrying)


def _async_retry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), RETRIES, is_retryable=worth_retrying)


class PrimaryFollowingConnection(sync_sentinel.SentinelManagedConnection):
    """A Sentinel-managed connection that asks where the primary is whenever it reopens.

    redis-py's asks only in `connect()`. But a command that fails is retried on the same
    connection, which reopens itself by sending (`send_command` opens a closed socket to the
    address it had): after a failover, the old primary's address. A primary that died
    outright refuses at once, but one cut off by a partition (or frozen) accepts the TCP
    connection and never answers, so each of the ten retries waited the full socket timeout:
    more than a minute and a half per command (measured with SIGSTOP) before the client gave
    up. This connection looks the primary up on that path too."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._sock is None and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health, retry_socket_connect)


class AsyncPrimaryFollowingConnection(async_sentinel.SentinelManagedConnection):
    """`PrimaryFollowingConnection` for asyncio clients (the webhook receiver)."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)


def redis_client(settings: Settings, **overrides: Any) -> redis.Redis:
    """The process's Redis client (the primary, under Sentinel)."""
    target = settings.redis_target
    options = {**CLIENT_OPTIONS, "retry": _retry(), **data_node_auth(target), **overrides}
    if target.is_sentinel:
        manager = sync_sentinel.Sentinel(
            list(target.sentinels), sentinel_kwargs=sentinel_node_options(settings)
        )
        client: redis.Redis = manager.master_for(
            settings.redis_sentinel_master,
            redis_class=redis.Redis,
            connection_class=PrimaryFollowingConnection,
            **options,
        )
        return client
    if target.scheme == "unix":
        return redis.Redis(unix_socket_path=target.host, **options)
    if target.tls is not None:
        options.update(ssl=True, **target.tls.redis_kwargs())
    return redis.Redis(host=target.host, port=target.port, **options)


class AsyncRedis:
    """An asyncio client of the same Redis, for an event loop (the webhook receiver).

    asyncio connections belong to the loop that opened them: open this in the loop that uses
    it, and `aclose` it there."""

    def __init__(self, settings: Settings) -> None:
        target = settings.redis_target
        options = {**CLIENT_OPTIONS, "retry": _async_retry(), **data_node_auth(target)}
        self._sentinels: list[Any] = []
        if target.is_sentinel:
            manager = async_sentinel.Sentinel(
                list(target.sentinels), sentinel_kwargs=sentinel_node_options(settings)
            )
            self._sentinels = list(manager.sentinels)
            self.client: redis_asyncio.Redis = manager.master_for(
                settings.redis_sentinel_master,
                redis_class=redis_asyncio.Redis,
                connection_class=AsyncPrimaryFollowingConnection,
                **options,
            )
        elif target.scheme == "unix":
            self.client = redis_asyncio.Redis(unix_socket_path=target.host, **options)
        else:
            if target.tls is not None:
                options.update(ssl=True, **target.tls.redis_kwargs())
            self.client = redis_asyncio.Redis(host=target.host, port=target.port, **options)

    async def aclose(self) -> None:
        await self.client.aclose()
        for node in self._sentinels:
            await node.aclose()


def data_node_auth(target: RedisTarget) -> dict[str, Any]:
    """The database and credentials (an ACL user, or a password alone) of the data nodes."""
    options: dict[str, Any] = {"db": target.db}
    if target.username:
        options["username"] = target.username
    if target.password:
        options["password"] = target.password
    return options


def sentinel_node_options(settings: Settings) -> dict[str, Any]:
    """How to talk to the sentinels themselves (their password is not the data nodes')."""
    options = dict(SENTINEL_NODE_OPTIONS)
    if settings.redis_sentinel_password is not None:
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    return options


def describe_connection(settings: Settings, client: redis.Redis) -> str:
    """How `client` reaches Redis, for `doctor`: the primary Sentinel names now, TLS and how
    the certificate is checked, the ACL user. No password.

    Raises:
        redis.RedisError: under Sentinel, no sentinel names a primary.
    """
    target = settings.redis_target
    parts = []
    if target.is_sentinel:
        host, port = client.connection_pool.get_master_address()  # type: ignore[attr-defined]
        parts.append(
            f"primary {host}:{port} named by Sentinel (master {settings.redis_sentinel_master!r}"
            f", {len(target.sentinels)} sentinel(s) listed)"
        )
    else:
        parts.append(f"at {target.redacted()}")
    if target.tls is not None:
        checked = {
            ssl.CERT_REQUIRED: "certificate verified",
            ssl.CERT_OPTIONAL: "certificate verified if presented",
            ssl.CERT_NONE: "CERTIFICATE NOT VERIFIED (ssl_cert_reqs=none)",
        }[target.tls.cert_reqs]
        against = target.tls.ca_file or "the system's CAs"
        parts.append(f"TLS, {checked} against {against}")
    if target.username:
        parts.append(f"ACL user {target.username!r}")
    return ", ".join(parts)
