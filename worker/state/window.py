"""The per-order resend window: one Redis key per order whose expiry is Tango's 30-second rule.

The key's value is the request that owns the window. The gate's script takes it set-if-absent
right before a call (`gate.py`), and the record scripts re-anchor it after Tango answers or drop
it, owner only (`lua/lib/set_window.lua`). Expiry is judged by Redis alone, so no worker's
clock takes part; this module holds the one conversion those scripts' callers share.
"""

from __future__ import annotations


def window_milliseconds(seconds: float) -> int:
    """Rounded up: a window never ends early."""
    return max(1, int(seconds * 1000 + 0.999))
