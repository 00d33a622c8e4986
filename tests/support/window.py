"""An order's window key read, or taken, straight in Redis: what a test sets up and checks.

The worker itself never handles the key outside its Lua scripts (`worker/state/gate.py` takes
it, `lua/lib/set_window.lua` re-anchors and drops it)."""

from __future__ import annotations

import redis

from worker.runtime import Runtime
from worker.state.keys import RedisKeys
from worker.state.window import window_milliseconds


class WindowKey:
    """One Redis's order windows, as a test sees them."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def acquire(self, reference_order_id: str, owner: str, hold_seconds: float) -> bool:
        """Take the window for `owner` (another worker, say) if nobody holds it."""
        key = self._keys.order_window(reference_order_id)
        return bool(self._client.set(key, owner, nx=True, px=window_milliseconds(hold_seconds)))

    def holder(self, reference_order_id: str) -> str | None:
        value = self._client.get(self._keys.order_window(reference_order_id))
        return None if value is None else str(value)

    def remaining_seconds(self, reference_order_id: str) -> float:
        """Seconds until the order's window ends (0 when open)."""
        remaining_ms = int(self._client.pttl(self._keys.order_window(reference_order_id)))
        return max(remaining_ms, 0) / 1000


def window_of(runtime: Runtime) -> WindowKey:
    return WindowKey(runtime.redis, runtime.keys)
