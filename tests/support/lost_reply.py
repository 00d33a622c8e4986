"""A script's reply lost on the wire once: the script ran in Redis, the connection broke
before its reply was read, and redis-py's retry sent the same EVALSHA again (a replay)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from hashlib import sha1
from typing import Any

import pytest
import redis
import redis.connection

from worker.state import scripts


@contextlib.contextmanager
def reply_lost_once(monkeypatch: pytest.MonkeyPatch, script_name: str) -> Iterator[list[int]]:
    """Within the block, the first reply to `script_name` is read and thrown away, and the
    connection reported broken, so redis-py runs the script again with the same arguments.
    Yields a list that holds one item once the reply was lost."""
    digest = sha1(scripts.load(script_name).source.encode()).hexdigest()
    lost: list[int] = []
    armed = {"pending": False}
    connection_class = redis.connection.AbstractConnection
    send, read = connection_class.send_command, connection_class.read_response

    def send_command(self: Any, *args: Any, **kwargs: Any) -> None:
        armed["pending"] = not lost and len(args) > 1 and args[:2] == ("EVALSHA", digest)
        send(self, *args, **kwargs)

    def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = read(self, *args, **kwargs)
        if armed["pending"]:
            armed["pending"] = False
            lost.append(1)
            raise redis.ConnectionError("the reply was lost on the wire (test)")
        return reply

    monkeypatch.setattr(connection_class, "send_command", send_command)
    monkeypatch.setattr(connection_class, "read_response", read_response)
    try:
        yield lost
    finally:
        monkeypatch.setattr(connection_class, "send_command", send)
        monkeypatch.setattr(connection_class, "read_response", read)
