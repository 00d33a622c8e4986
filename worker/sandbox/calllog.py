"""The log of RaaS requests the sandbox received, for tests to assert on."""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable
from typing import Any


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
        self,
        *,
        method: str,
        path: str,
        reference_order_id: str | None,
        request_id: str,
        auth: str,
        body: Any,
        received_at: float,
        probe: bool = False,
    ) -> int:
        """Records the arrival of a request.

        Args:
            method: HTTP method.
            path: Request path.
            reference_order_id: Order named in the path, if any.
            request_id: The id sent back in ``X-REQUEST-ID``.
            auth: ``basic``, ``bearer``, ``none`` or ``invalid``.
            body: Parsed JSON body, or None.
            received_at: Sandbox clock at arrival.
            probe: The caller marked it as a probe (``X-Tango-Resend-Probe``).

        Returns:
            An id to pass to ``finish``.
        """
        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "referenceOrderID": reference_order_id,
            "status": None,
            "i18nKey": None,
            "requestId": request_id,
            "auth": auth,
            "body": copy.deepcopy(body),
            "received_at": received_at,
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
