"""The root of tango-resend's exceptions, and the one every layer may raise about Redis.

Every exception tango-resend defines derives from `TangoResendError`, so an application can
catch all of ours, and nothing else's, with one clause (`from worker import TangoResendError`).
The tree below it is grouped by what the caller should do, as in `worker/tango/errors.py`:
`RedisUnavailable` means "try again later", `InvalidResendRequest` means "fix the input", and
so on. Classes that callers already catch as a built-in (`ValueError`, `RuntimeError`) keep
that base too.

This module imports nothing, so the lowest layers (`core`, `state`, `tango`) and the pure
modules can derive from it without an import cycle (`tests/unit/test_architecture.py`).
"""

from __future__ import annotations


class TangoResendError(Exception):
    """The root of every exception tango-resend raises on purpose."""


class RedisUnavailable(TangoResendError, RuntimeError):
    """Raised by every function of the API when Redis (the broker and all state) cannot be
    reached or answers with an error; nothing was changed. Retry later.

    Defined here rather than beside the producer so that any layer can say "Redis is down"
    with the one type callers catch (a `RuntimeError`, as it always was)."""
