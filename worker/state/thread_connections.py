"""One Redis connection per thread for the scripts every resend runs.

Every run of a resend makes two script calls (begin and gate; outcome). Through redis-py's
client, each one takes a connection from the pool and gives it back (a lock each way) and is
timed for redis-py's observability hooks: about 60 µs of CPU per call on top of the ~30 µs
that sending it and reading the reply cost, and a worker's throughput is bounded by its CPU
(the threads share one GIL). A worker thread therefore keeps one connection of the client's
pool for itself and sends its scripts on it directly, with the same connection settings,
health checks and retries as the client.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Any

import redis
from redis.exceptions import NoScriptError

_BY_CLIENT: weakref.WeakKeyDictionary[redis.Redis, ThreadConnections] = weakref.WeakKeyDictionary()
_BY_CLIENT_LOCK = threading.Lock()


class ThreadConnections:
    """A connection of `client`'s pool for each thread that calls a script through it."""

    def __init__(self, client: redis.Redis) -> None:
        # The pool, not the client: this object is the client's value in a weak-keyed map, and
        # a reference back to its key would keep the client (and its connections) alive.
        self._pool = client.connection_pool
        self._local = threading.local()

    def evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script (`client.register_script`) on this thread's connection,
        loading it first if Redis does not have it (a restart, `SCRIPT FLUSH`)."""
        connection = self._connection()
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        dropped = False

        def attempt() -> Any:
            if dropped:
                # Reopen through `connect()`: under Sentinel that asks the sentinels where the
                # primary is now. Sending on a closed connection would reopen it to the address
                # it had (redis-py's `send_command` bypasses the Sentinel lookup), which after
                # a failover is the dead primary, or a replica.
                connection.connect()
            try:
                connection.send_command(*command)
                return connection.read_response()
            except NoScriptError:
                # A restarted Redis, `SCRIPT FLUSH`, or a promoted replica: Redis 7 does not
                # replicate the script cache, so a new primary knows none of our scripts.
                connection.send_command("SCRIPT", "LOAD", script.script)
                connection.read_response()
                connection.send_command(*command)
                return connection.read_response()

        def drop(_: Exception) -> None:
            nonlocal dropped
            connection.disconnect()
            dropped = True

        # As the client itself would: a broken connection is dropped and tried once more.
        return connection.retry.call_with_retry(attempt, drop)

    def evalsha_then(self, script: Any, keys: list[str], args: list[Any], *command: Any) -> Any:
        """`evalsha`, with `command` sent right behind it in the same write on the same
        connection (WAIT: it answers for this connection's writes); returns both replies. A
        broken connection sends both again, never the second alone on a new connection."""
        connection = self._connection()
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        dropped = False

        def attempt() -> tuple[Any, Any]:
            if dropped:
                connection.connect()  # through Sentinel, as `evalsha` says why
            connection.send_packed_command(connection.pack_commands([evalsha, command]))
            try:
                reply = connection.read_response()
            except NoScriptError:
                connection.read_response()  # the second command's reply is still owed
                connection.send_command("SCRIPT", "LOAD", script.script)
                connection.read_response()
                return attempt()
            return reply, connection.read_response()

        def drop(_: Exception) -> None:
            nonlocal dropped
            connection.disconnect()
            dropped = True

        return connection.retry.call_with_retry(attempt, drop)

    def _connection(self) -> Any:
        held: _Held | None = getattr(self._local, "held", None)
        # A forked child must not use its parent's socket: the pool itself starts over there.
        if held is None or held.pid != os.getpid():
            held = self._local.held = _Held(self._pool, self._pool.get_connection())
        return held.connection


class _Held:
    """A thread's connection, given back to the pool when the thread ends (its locals go)."""

    def __init__(self, pool: Any, connection: Any) -> None:
        self.pool, self.connection, self.pid = pool, connection, os.getpid()

    def __del__(self) -> None:
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):  # at interpreter exit, or a pool gone
                self.pool.release(self.connection)


def thread_connections(client: Any) -> ThreadConnections | None:
    """The per-thread connections of a plain `redis.Redis` client (one per client), or None
    for anything else (a pipeline, a single-connection client, an asyncio client)."""
    if type(client) is not redis.Redis or client.connection is not None:
        return None
    with _BY_CLIENT_LOCK:
        connections = _BY_CLIENT.get(client)
        if connections is None:
            connections = _BY_CLIENT[client] = ThreadConnections(client)
        return connections
