"""The log of RaaS requests the sandbox received, for tests to assert on."""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable
from typing import Any

from .responses import Request


class CallLog:
    """Thread-safe, ordered records of RaaS calls, each opened on arrival and closed on answer."""

    def __init__(self, now: Callable[[], float]) -> None:
        """Creates an empty log.

        Args:
            now: The sandbox clock in epoch seconds, stamped on answers.
        """
        self._now = now
        self._lock = threading.Lock()
        # Keyed by a never-reset id so a reset racing an in-flight call cannot
        # make that call's finish land on someone else's record.
        self._records: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def begin(
        self, request: Request, reference_order_id: str | None, *, probe: bool = False
    ) -> int:
        """Records the arrival of a request.

        Args:
            request: The parsed request (its ``request_id`` is the one sent back in
                ``X-REQUEST-ID``, its ``auth`` what its ``Authorization`` header is).
            reference_order_id: Order named in the path, if any.
            probe: The caller marked it as a probe (``X-Tango-Resend-Probe``).

        Returns:
            An id to pass to ``finish``.
        """
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "referenceOrderID": reference_order_id,
            "status": None,
            "i18nKey": None,
            "requestId": request.request_id,
            "auth": request.auth,
            "body": copy.deepcopy(request.json_body),
            "received_at": request.received_at,
            "answered_at": None,
            "probe": probe,
        }
        with self._lock:
            call_id = next(self._ids)
            self._records[call_id] = record
        return call_id

    def finish(self, call_id: int, *, status: int | None, i18n_key: str | None) -> None:
        """Completes a record; ``status`` None means the connection was reset.

        Args:
            call_id: What ``begin`` returned.
            status: HTTP status written, or None.
            i18n_key: Tango key of the answer, if any.
        """
        with self._lock:
            record = self._records.get(call_id)
            if record is not None:
                record.update(status=status, i18nKey=i18n_key, answered_at=self._now())

    def snapshot(self) -> list[dict[str, Any]]:
        """Returns deep copies of the records, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._records.values()))

    def clear(self) -> None:
        """Forgets every record."""
        with self._lock:
            self._records.clear()
