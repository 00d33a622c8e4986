"""Counting network round trips to Redis in this process, by redis-py connection.

A round trip is one `send_packed_command`: a command, a script (EVALSHA) or a whole pipeline
goes out in one write and its replies come back before the caller goes on. (A replayed
EVALSHA after NOSCRIPT would count twice, as it costs twice.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.connection import Connection


class RoundTrips:
    """Round trips made by this process's redis-py connections while `counting()` is open."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    @contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        original = Connection.send_packed_command
        counter = self

        def send_packed_command(connection: Connection, *args: Any, **kwargs: Any) -> None:
            with counter._lock:
                counter.count += 1
            original(connection, *args, **kwargs)

        Connection.send_packed_command = send_packed_command  # type: ignore[method-assign]
        try:
            yield self
        finally:
            Connection.send_packed_command = original  # type: ignore[method-assign]

    def since(self, mark: int) -> int:
        return self.count - mark
