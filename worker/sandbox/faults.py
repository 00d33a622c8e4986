"""Queued misbehaviour: what the next resend calls of an order should suffer."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

FAULT_BODIES = ("json", "html", "malformed")
DELAY_PHASES = ("before", "after")
ANY_ORDER = "*"


@dataclass(frozen=True)
class Fault:
    """One queued misbehaviour, consumed by a single resend call.

    Attributes:
        reference_order_id: The order it applies to, or ``"*"`` for any order.
        status: HTTP status to answer instead of processing, or None.
        retry_after: Seconds to put in a ``Retry-After`` header, or None.
        delay_seconds: How long to stall.
        delay_phase: ``"before"`` stalls before processing; ``"after"`` processes
            (the resend really happens) and stalls before answering; with an
            error ``status`` that error replaces Tango's answer (a gateway's 502
            after Tango acted).
        body: ``"json"`` (Tango error), ``"html"`` (load balancer page) or
            ``"malformed"`` (not JSON).
        reset: Drop the TCP connection instead of answering.
        process_seconds: Tango's own time on the call before it acts (after a
            ``before`` stall). With ``delay_phase="after"`` this is "act, then answer
            late": Tango works a while, resends, then stalls past the client's timeout.
    """

    reference_order_id: str
    status: int | None = None
    retry_after: float | None = None
    delay_seconds: float = 0.0
    delay_phase: str = "before"
    body: str = "json"
    reset: bool = False
    process_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status between 100 and 599")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")
        if self.process_seconds < 0:
            raise ValueError("process_seconds must not be negative")
        if self.delay_phase not in DELAY_PHASES:
            raise ValueError(f"delay_phase must be one of {DELAY_PHASES}")
        if self.body not in FAULT_BODIES:
            raise ValueError(f"body must be one of {FAULT_BODIES}")

    def matches(self, reference_order_id: str) -> bool:
        """Tells whether this fault applies to a call for the given order.

        Args:
            reference_order_id: The order named in the request path.

        Returns:
            True for the fault's own order or when the fault targets any order.
        """
        return self.reference_order_id in (ANY_ORDER, reference_order_id)

    @property
    def is_success_status(self) -> bool:
        """True when the fault's status is 2xx, so the resend must really happen."""
        return self.status is not None and 200 <= self.status <= 299


class FaultQueue:
    """A thread-safe FIFO of faults shared by all orders."""

    def __init__(self) -> None:
        """Creates an empty queue."""
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()

    def push(self, fault: Fault, count: int = 1) -> None:
        """Queues a fault for ``count`` consecutive matching calls.

        Raises:
            ValueError: If ``count`` is below 1.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.extend([fault] * count)

    def pop_for(self, reference_order_id: str) -> Fault | None:
        """Removes and returns the oldest fault that applies to this order, if any."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(reference_order_id):
                    del self._faults[index]
                    return fault
            return None

    def clear(self) -> None:
        """Drops every queued fault."""
        with self._lock:
            self._faults.clear()
