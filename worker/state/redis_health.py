"""What Redis must be for tango-resend to keep its promises: a database that never evicts.

Redis is our database, not a cache: records, windows, the due index and queued task messages
all live there. A `maxmemory-policy` other than `noeviction` lets Redis drop any of them under
memory pressure without an error (Sidekiq warns about the same). The policy is read from
`INFO memory`, because managed Redis services often disable `CONFIG`.
"""

from __future__ import annotations

import logging

import redis

logger = logging.getLogger("tango_resend.redis")

SAFE_EVICTION_POLICY = "noeviction"


def eviction_policy(client: redis.Redis) -> str | None:
    """Redis's `maxmemory_policy` from `INFO memory`; None when the server does not say."""
    info = client.info("memory")
    policy = info.get("maxmemory_policy")
    return None if policy is None else str(policy)


def evicts(policy: str | None) -> bool:
    """True when `policy` lets Redis drop keys (an unknown policy is not assumed unsafe)."""
    return policy is not None and policy != SAFE_EVICTION_POLICY


def eviction_warning(policy: str) -> str:
    """The loud warning logged at start when Redis may evict our data."""
    return (
        f"REDIS MAY DROP OUR DATA: maxmemory-policy is {policy!r}, not 'noeviction'. Under "
        "memory pressure Redis will silently drop resend records, order windows and queued "
        "tasks (requests lost, resends inside Tango's window). Set maxmemory-policy "
        "noeviction on this Redis (see docs/guarantees.md, 'Redis must not evict')"
    )


def warn_if_evicting(client: redis.Redis) -> str | None:
    """Log a warning when Redis may evict; return the policy read (None when unreadable).

    Never raises: a Redis that cannot be asked right now is reported elsewhere (health checks).
    """
    try:
        policy = eviction_policy(client)
    except redis.RedisError as error:
        logger.warning("could not read Redis's maxmemory-policy: %s", error)
        return None
    if evicts(policy):
        assert policy is not None
        logger.warning(eviction_warning(policy))
    return policy
