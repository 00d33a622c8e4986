"""The per-order resend window: one Redis key per order whose expiry is Tango's 30-second rule.

The key's value is the request that owns the window. It is taken set-if-absent right before a
call, held long enough to cover the call itself, re-anchored after Tango answers, and changed
or dropped only by its owner (compare-and-set in one Lua script, so two workers never both win).
Expiry is judged by Redis alone, so no worker's clock takes part.
"""

from __future__ import annotations

import redis

from worker import record_scripts
from worker.keys import RedisKeys

# Returns 0 when `owner` now holds the window, else the holder's remaining milliseconds (>= 1).
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local remaining = redis.call('PTTL', KEYS[1])
if remaining < 1 then return 1 end
return remaining
"""

# Re-anchor or release, by the same Lua function the record scripts use after a call.
_CHANGE = record_scripts.SET_WINDOW + "return set_window(KEYS[1], ARGV[1], ARGV[2])"


def window_milliseconds(seconds: float) -> int:
    """Rounded up: a window never ends early."""
    return max(1, int(seconds * 1000 + 0.999))


class OrderWindow:
    """Acquire, re-anchor and release the per-order window lock."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys
        self._acquire = client.register_script(_ACQUIRE)
        self._change = client.register_script(_CHANGE)

    def acquire(self, reference_order_id: str, owner: str, hold_seconds: float) -> float:
        """Take the window for `owner` for `hold_seconds` if nobody holds it.

        Returns:
            0.0 when taken; otherwise the seconds until the current holder's window ends.
        """
        remaining_ms = int(
            self._acquire(
                keys=[self._keys.order_window(reference_order_id)],
                args=[owner, window_milliseconds(hold_seconds)],
            )
        )
        return remaining_ms / 1000

    def reanchor(self, reference_order_id: str, owner: str, expire_in_seconds: float) -> bool:
        """Make the window end `expire_in_seconds` from now (Redis's now). Owner only."""
        key = self._keys.order_window(reference_order_id)
        return bool(self._change(keys=[key], args=[owner, window_milliseconds(expire_in_seconds)]))

    def release(self, reference_order_id: str, owner: str) -> bool:
        """Drop the window (no resend happened). Owner only."""
        key = self._keys.order_window(reference_order_id)
        return bool(self._change(keys=[key], args=[owner, "release"]))

    def remaining_seconds(self, reference_order_id: str) -> float:
        """Seconds until the order's window ends (0 when open)."""
        remaining_ms = int(self._client.pttl(self._keys.order_window(reference_order_id)))
        return max(remaining_ms, 0) / 1000

    def holder(self, reference_order_id: str) -> str | None:
        value = self._client.get(self._keys.order_window(reference_order_id))
        return None if value is None else str(value)
