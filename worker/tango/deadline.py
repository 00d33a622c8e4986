"""A call's total deadline, enforced where requests' own timeouts cannot see.

requests bounds each connection attempt and each read, not a call as a whole: name
resolution, a pool wait, a server that trickles its answer or a process paused between the
gate and the send all fall outside them. A call that outlives `calling_until` (the gate's
bound on it) could reach Tango after a replacement run has already probed. So a resend is
sent under a `CallDeadline`, kept per thread:

- no byte of the request leaves after `send_by` (checked once connected, right before the
  first byte: name resolution, the connection and TLS all come first), and such a call
  is never ambiguous, since Tango saw nothing;
- every timeout is cut to what is left before `done_by`, and the answer's body is read
  against it too.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from worker.core.errors import TangoResendError

_current = threading.local()


@dataclass(frozen=True)
class CallDeadline:
    """Monotonic times: the last moment the request may start leaving, and the moment the
    whole call (answer read) must be over."""

    send_by: float
    done_by: float

    def remaining_seconds(self) -> float:
        return self.done_by - time.monotonic()


class NotSentInTime(TangoResendError):
    """The request was not sent: its send-by time had passed (nothing reached Tango)."""


@contextlib.contextmanager
def call_deadline(deadline: CallDeadline) -> Iterator[None]:
    """Calls this thread makes within the block are bound by `deadline`."""
    before = getattr(_current, "deadline", None)
    _current.deadline = deadline
    try:
        yield
    finally:
        _current.deadline = before


def current_deadline() -> CallDeadline | None:
    deadline: CallDeadline | None = getattr(_current, "deadline", None)
    return deadline


def check_send_by() -> None:
    """Raise `NotSentInTime` when this thread's call may no longer start sending."""
    deadline = current_deadline()
    if deadline is not None and time.monotonic() > deadline.send_by:
        late = time.monotonic() - deadline.send_by
        raise NotSentInTime(f"not sent: {late:.3f}s past the moment it had to leave by")


class _SendByCheck:
    """A connection that checks the thread's send-by time once connected, before the first
    byte of each request."""

    _request_unsent = False

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._request_unsent = True
        super().request(*args, **kwargs)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self._request_unsent:
            if self.sock is None:  # type: ignore[attr-defined]
                self.connect()  # type: ignore[attr-defined]
            check_send_by()
            self._request_unsent = False
        super().send(data)  # type: ignore[misc]


class DeadlineHTTPConnection(_SendByCheck, HTTPConnection):
    pass


class DeadlineHTTPSConnection(_SendByCheck, HTTPSConnection):
    pass


class DeadlineHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection


POOL_CLASSES_BY_SCHEME: dict[str, type[HTTPConnectionPool]] = {
    "http": DeadlineHTTPConnectionPool,
    "https": DeadlineHTTPSConnectionPool,
}
