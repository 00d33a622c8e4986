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

from typing import Any

import redis
import redis.asyncio as redis_asyncio
import redis.asyncio.sentinel as async_sentinel
import redis.sentinel as sync_sentinel

from worker.core.redis_url import RedisTarget
from worker.core.settings import Settings

# Bounded timeouts, so a dead Redis fails a call rather than hanging it.
CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 15,
}
# A timeout is retried like a lost connection. A client built by redis-py's constructor does
# that by default (and warns when told to); a Sentinel-managed one does not retry at all unless
# told, and its one retry is what reopens a dropped connection through the sentinels.
SENTINEL_DATA_NODE_OPTIONS: dict[str, Any] = {"retry_on_timeout": True}

# A sentinel that does not answer is skipped for the next one: a short wait for each, so a
# dead sentinel costs a second, not a data node's ten.
SENTINEL_NODE_OPTIONS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 1}


def redis_client(settings: Settings, **overrides: Any) -> redis.Redis:
    """The process's Redis client (the primary, under Sentinel)."""
    target = settings.redis_target
    options = {**CLIENT_OPTIONS, **data_node_auth(target), **overrides}
    if target.is_sentinel:
        manager = sync_sentinel.Sentinel(
            list(target.sentinels), sentinel_kwargs=sentinel_node_options(settings)
        )
        client: redis.Redis = manager.master_for(
            settings.redis_sentinel_master,
            redis_class=redis.Redis,
            **options,
            **SENTINEL_DATA_NODE_OPTIONS,
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
        options = {**CLIENT_OPTIONS, **data_node_auth(target)}
        self._sentinels: list[Any] = []
        if target.is_sentinel:
            manager = async_sentinel.Sentinel(
                list(target.sentinels), sentinel_kwargs=sentinel_node_options(settings)
            )
            self._sentinels = list(manager.sentinels)
            self.client: redis_asyncio.Redis = manager.master_for(
                settings.redis_sentinel_master,
                redis_class=redis_asyncio.Redis,
                **options,
                **SENTINEL_DATA_NODE_OPTIONS,
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


def describe_target(settings: Settings) -> str:
    """Where this process's Redis is, password hidden (for banners and `doctor`)."""
    target = settings.redis_target
    if target.is_sentinel:
        return f"{target.redacted()} (Sentinel, primary {settings.redis_sentinel_master!r})"
    return target.redacted()
