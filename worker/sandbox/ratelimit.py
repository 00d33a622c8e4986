"""Tango's platform rate limit: a sliding window over the calls it accepted."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


def window_for(rate_limit: float) -> tuple[float, int]:
    """Returns the window a rate limit is judged over.

    Args:
        rate_limit: Calls per second; must be positive.

    Returns:
        ``(span, allowed)``: at most ``allowed`` accepted calls in any ``span``
        seconds. 5 TPS is 5 per 1 s, 1 TPS is 1 per 1 s, 0.5 TPS is 1 per 2 s.
    """
    span = max(1.0, 1.0 / rate_limit)
    return span, max(1, round(rate_limit * span))


@dataclass(frozen=True)
class RateVerdict:
    """How the limiter judged one call.

    Attributes:
        accepted: True when the call may proceed (and was counted).
        rate_limit: The limit it was judged against (0 = off).
        wait_seconds: For a refused call, seconds from its arrival until a
            later call would be accepted; 0 for an accepted call.
    """

    accepted: bool
    rate_limit: float
    wait_seconds: float = 0.0


class SlidingWindow:
    """Arrival times of accepted calls; not locked itself, the owner must serialise calls.

    Arrival is stamped before a handler thread reaches the limiter, so calls can
    be judged slightly out of arrival order. A call is therefore accepted only if
    no ``span``-second window would then hold more than ``allowed`` accepted
    calls, which for in-order calls is exactly "fewer than ``allowed`` accepted
    within the last ``span`` seconds".
    """

    def __init__(self) -> None:
        """Creates an empty window."""
        self._accepted: list[float] = []  # sorted ascending

    def admit(self, arrived_at: float, rate_limit: float) -> RateVerdict:
        """Judges one call and, when accepted, records it.

        Args:
            arrived_at: Sandbox clock at the call's arrival, in epoch seconds.
            rate_limit: Calls per second; 0 turns the limit off (and empties
                the window, so turning it on again starts afresh).

        Returns:
            The verdict.
        """
        if rate_limit <= 0:
            self._accepted.clear()
            return RateVerdict(accepted=True, rate_limit=rate_limit)
        span, allowed = window_for(rate_limit)
        accepted = self._accepted
        # Older calls cannot share a window with this one or any later one; the
        # extra span keeps them for calls judged a little out of order.
        del accepted[: bisect.bisect_left(accepted, arrived_at - 2 * span)]
        index = bisect.bisect_right(accepted, arrived_at)
        merged = [*accepted[:index], arrived_at, *accepted[index:]]
        # Every run of allowed + 1 consecutive calls that includes this one.
        first = max(0, index - allowed)
        last = min(index, len(merged) - 1 - allowed)
        for start in range(first, last + 1):
            if merged[start + allowed] - merged[start] < span:
                # A call arriving after all accepted ones gets in once the
                # allowed-th newest accepted call is span seconds old.
                wait = accepted[-allowed] + span - arrived_at
                return RateVerdict(accepted=False, rate_limit=rate_limit, wait_seconds=wait)
        accepted.insert(index, arrived_at)
        return RateVerdict(accepted=True, rate_limit=rate_limit)

    def clear(self) -> None:
        """Forgets every accepted call."""
        self._accepted.clear()


def retry_after_header(wait_seconds: float) -> str:
    """Renders a wait as a ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_seconds)))
