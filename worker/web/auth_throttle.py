"""Slowing down whoever guesses tokens: console sign-ins and bearer tokens, kept in Redis.

Per client: from its fourth failure on (within 15 minutes of the last), a client must wait
1 s, 2 s, 4 s, ... up to a minute before its next try, and a try made while it waits is
refused unanswered (429), its token not even looked at: checking it would still tell a
guesser whether it was right. Globally: past AUTH_FAILURES_PER_MINUTE failures of all
clients together in one minute, until that minute ends, only clients whose token was valid
in the last 15 minutes may try at all, so guessing from many addresses gains nothing while
the services already talking to us go on. The client is the connection's peer, or the
address a trusted proxy names (worker/web/forwarded.py): never a header a client wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker.state.keys import RedisKeys

FREE_FAILURES = 3
MAX_WAIT_SECONDS = 60
FAILURES_KEPT_SECONDS = 15 * 60
RECENT_SUCCESS_SECONDS = 15 * 60


@dataclass(frozen=True)
class ThrottleKeys:
    """Where one kind of attempt (console sign-ins, bearer tokens) keeps its per-client counts."""

    failures: Callable[[str], str]
    wait: Callable[[str], str]


def signin_keys(keys: RedisKeys) -> ThrottleKeys:
    return ThrottleKeys(keys.console_signin_failures, keys.console_signin_wait)


def bearer_keys(keys: RedisKeys) -> ThrottleKeys:
    return ThrottleKeys(keys.bearer_failures, keys.bearer_wait)


class FailureThrottle:
    """Counts one kind of failed attempt per client and for everyone, and says who must wait."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        kind: ThrottleKeys,
        global_cap_per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self._kind = kind
        self._cap = global_cap_per_minute
        self._clock = clock

    def wait_seconds(self, who: str) -> int:
        """How long `who` must still wait before trying again (0: may try now)."""
        now = self._clock()
        minute = int(now // 60)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.pttl(self._kind.wait(who))
            pipe.get(self._keys.auth_failures_in_minute(minute))
            pipe.exists(self._keys.auth_recent_success(who))
            own_wait_ms, everyone_failures, known = pipe.execute()
        if int(own_wait_ms) > 0:
            return -(-int(own_wait_ms) // 1000)
        if int(everyone_failures or 0) >= self._cap and not int(known):
            return max(1, (minute + 1) * 60 - int(now))
        return 0

    def failed(self, who: str) -> int:
        """Count a failure of `who`; returns how long it must now wait."""
        failures_key = self._kind.failures(who)
        everyone_key = self._keys.auth_failures_in_minute(int(self._clock() // 60))
        with self._client.pipeline(transaction=False) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, FAILURES_KEPT_SECONDS)
            pipe.incr(everyone_key)
            pipe.expire(everyone_key, 120)
            failures = int(pipe.execute()[0])
        if failures <= FREE_FAILURES:
            return 0
        wait: int = min(2 ** (failures - FREE_FAILURES - 1), MAX_WAIT_SECONDS)
        self._client.set(self._kind.wait(who), "1", ex=wait)
        return wait

    def succeeded(self, who: str) -> None:
        """`who` gave a valid token: its failures are forgotten, and the global cap spares
        it for a while. Writes only when something changes (bearer tokens come with every
        API call)."""
        recent = self._keys.auth_recent_success(who)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.exists(self._kind.failures(who))
            pipe.exists(recent)
            had_failures, known = pipe.execute()
        if int(had_failures):
            self._client.delete(self._kind.failures(who), self._kind.wait(who))
        if not int(known):
            self._client.set(recent, "1", ex=RECENT_SUCCESS_SECONDS)
