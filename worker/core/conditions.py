"""Conditions that last (Redis unreachable, Tango refusing our credentials, Tango
unreachable), logged so a human reads them and a log file survives them.

A condition is logged once when it starts (with what to check), once a minute while it
lasts (how many failures it hid), and once when it ends (how long it lasted). Every place
that meets the trouble (the scheduler thread, the callback threads, Celery's consumer, the
web app, the metrics) reports it here instead of logging a traceback per failure: one
worker that lost Redis used to log a 40-line traceback every second.

Each process keeps its own state in memory: that is what a process can tell about Redis
when Redis is not there to ask (`tango_resend_redis_up`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

REPEAT_SECONDS = 60.0


@dataclass(frozen=True)
class ConditionState:
    """A snapshot of a condition: whether it holds, since when (epoch seconds), its last
    detail and how many failures were reported since it started."""

    active: bool
    since: float | None
    detail: str | None
    failures: int


class Condition:
    """One lasting condition of this process, logged at most once a minute while it lasts.

    Thread-safe: pool threads, the scheduler and the callback threads all report into one.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        ended: str,
        *,
        level: int = logging.ERROR,
        repeat_seconds: float = REPEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        logger: where the lines go.
        what: the condition in words ("Redis is unreachable"), the start of every line.
        ended: its end in words ("Redis answers again").
        level: the level of the first line; the "still" lines are WARNING, the end INFO.
        repeat_seconds: at most one "still" line per this many seconds.
        """
        self._logger = logger
        self._what = what
        self._ended = ended
        self._level = level
        self._repeat = repeat_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._started: float | None = None  # monotonic
        self._since: float | None = None  # epoch seconds
        self._last_line = 0.0
        self._failures = 0
        self._hidden = 0
        self._detail: str | None = None

    def report(self, detail: str, advice: str = "") -> bool:
        """The condition was met (again). Logs the first time, then at most once a minute.

        Args:
            detail: what failed this time, without secrets (an exception's message).
            advice: what to check (a setting's name), said on the first line.

        Returns:
            True when this report started the condition.
        """
        with self._lock:
            now = self._clock()
            self._failures += 1
            self._detail = detail
            if self._started is None:
                self._started, self._since, self._last_line = now, self._wall_clock(), now
                self._failures, self._hidden = 1, 0
                first = True
            elif now - self._last_line >= self._repeat:
                first = False
                hidden, self._hidden, self._last_line = self._hidden, 0, now
                lasted = now - self._started
            else:
                self._hidden += 1
                return False
        if first:
            self._logger.log(
                self._level,
                "%s: %s%s (logged again once a minute while it lasts)",
                self._what,
                detail,
                f"; {advice}" if advice else "",
            )
            return True
        self._logger.warning(
            "%s for %s now: %s (%d more failure(s) since the last line)",
            self._what,
            _duration(lasted),
            detail,
            hidden,
        )
        return False

    def clear(self) -> bool:
        """The condition no longer holds (a success). Logs its end if it held; True then."""
        with self._lock:
            if self._started is None:
                return False
            lasted, failures = self._clock() - self._started, self._failures
            self._started = self._since = self._detail = None
            self._failures = self._hidden = 0
        self._logger.warning(
            "%s after %s (%d failure(s) meanwhile)", self._ended, _duration(lasted), failures
        )
        return True

    @property
    def active(self) -> bool:
        return self._started is not None

    def state(self) -> ConditionState:
        with self._lock:
            return ConditionState(
                self._started is not None, self._since, self._detail, self._failures
            )


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 600:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# This process's conditions. Module-level on purpose: every thread and every Celery signal
# handler of the process must report into the same one, and none reads the environment.
REDIS_UNREACHABLE = Condition(
    logging.getLogger("tango_resend.redis"), "Redis is unreachable", "Redis answers again"
)
TANGO_CREDENTIALS_REFUSED = Condition(
    logging.getLogger("tango_resend.tango"),
    "Tango refuses our credentials",
    "Tango accepts our credentials again",
)
TOKEN_ENDPOINT_FAILING = Condition(
    logging.getLogger("tango_resend.tango"),
    "Tango's OAuth token endpoint is failing",
    "Tango's OAuth token endpoint answers again",
)
TANGO_UNREACHABLE = Condition(
    logging.getLogger("tango_resend.tango"),
    "Tango is unreachable",
    "Tango answers again",
    level=logging.WARNING,
)


# What a lost Redis raises (redis-py's errors). The Celery glue adds kombu's OperationalError
# where it publishes, which keeps kombu out of the layers below it.
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError,)


def redis_error_detail(error: BaseException) -> str:
    """A Redis failure in one line: its type and message, no traceback."""
    return f"{type(error).__name__}: {error}"
