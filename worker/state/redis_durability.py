"""How much of what Redis acknowledged survives a crash: its persistence and its replicas.

Redis answers a write before the write is on disk or on a replica. What a crash can take back
depends on the set-up, and `doctor` and every process at start say which one they found:

- AOF off: a restart loses every write since the last RDB snapshot (all of them, without one);
- `appendfsync everysec` (Redis's default with AOF): a host crash can lose about the last
  second of writes; a Redis process crash alone loses nothing (the OS has the file);
- `appendfsync always`: a write is on disk before Redis answers;
- `appendfsync no`: the OS flushes when it likes, typically within 30 s;
- replicas connected: a failover can still lose the writes a replica had not received yet,
  unless the writer waits for them (`WAIT`, REDIS_WAIT_REPLICAS);
- `min-replicas-to-write N`: the primary refuses writes while fewer than N replicas are in
  sync, so a primary cut off from its replicas stops accepting what a failover would lose.

Each is read from `INFO` where it can be, then `CONFIG GET`, which managed Redis services often
disable; what cannot be read is reported as unknown, never guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

logger = logging.getLogger("tango_resend.redis")


@dataclass(frozen=True)
class Durability:
    """What `describe` needs, as read from one Redis (the primary)."""

    aof: bool
    appendfsync: str | None  # None: CONFIG is disabled
    rdb_rules: str  # "" when snapshots are off or CONFIG is disabled
    role: str
    connected_replicas: int
    min_replicas_to_write: int | None  # None: unknown
    min_replicas_max_lag: int | None

    @property
    def weak(self) -> bool:
        """A Redis restart or host crash can lose more than about a second of writes."""
        return not self.aof or self.appendfsync == "no"


def read_durability(client: redis.Redis) -> Durability:
    """Read persistence and replication from `client`'s server.

    Raises:
        redis.RedisError: the server does not answer `INFO`.
    """
    persistence = client.info("persistence")
    replication = client.info("replication")
    aof = str(persistence.get("aof_enabled", "0")) == "1"
    settings = _config(
        client, ("appendfsync", "save", "min-replicas-to-write", "min-replicas-max-lag")
    )
    return Durability(
        aof=aof,
        appendfsync=settings.get("appendfsync"),
        rdb_rules=str(settings.get("save", "")).strip(),
        role=str(replication.get("role", "?")),
        connected_replicas=int(replication.get("connected_slaves", 0) or 0),
        min_replicas_to_write=_int_or_none(settings.get("min-replicas-to-write")),
        min_replicas_max_lag=_int_or_none(settings.get("min-replicas-max-lag")),
    )


def describe(durability: Durability) -> str:
    """One line an operator reads: what this Redis can lose, part by part."""
    parts = [_persistence(durability), _replicas(durability)]
    return "; ".join(parts)


def _persistence(durability: Durability) -> str:
    if not durability.aof:
        if durability.rdb_rules:
            return (
                f"AOF off (RDB snapshots only, save {durability.rdb_rules}): a restart loses "
                "every write since the last snapshot"
            )
        return "AOF off and no RDB snapshots: a Redis restart loses every record and queued resend"
    fsync = durability.appendfsync
    if fsync == "always":
        return "AOF on, appendfsync always: every write is on disk before Redis answers"
    if fsync == "everysec":
        return (
            "AOF on, appendfsync everysec: a host crash can lose about the last second of "
            "writes (a Redis crash alone loses nothing)"
        )
    if fsync == "no":
        return (
            "AOF on, appendfsync no: the OS flushes when it likes; a host crash can lose about "
            "the last 30 seconds of writes"
        )
    return "AOF on, appendfsync not readable (CONFIG is disabled on this Redis)"


def _replicas(durability: Durability) -> str:
    if durability.role not in ("master", "?"):
        return f"this Redis is a {durability.role}, not the primary"
    count = durability.connected_replicas
    replicas = (
        f"{count} replica(s) connected: a failover can lose the writes they had not received"
        if count
        else "no replica connected: a lost host loses what its disk lost"
    )
    minimum = durability.min_replicas_to_write
    if minimum is None:
        return f"{replicas}; min-replicas-to-write not readable"
    if minimum == 0:
        return f"{replicas}; min-replicas-to-write 0 (writes never wait for a replica)"
    lag = durability.min_replicas_max_lag
    lag_text = f" lagging at most {lag} s" if lag is not None else ""
    return (
        f"{replicas}; min-replicas-to-write {minimum}: writes are refused while fewer than "
        f"{minimum} replica(s){lag_text} are in sync"
    )


def log_durability(client: redis.Redis) -> Durability | None:
    """Say at start what this Redis can lose: a warning when a restart or a host crash can lose
    more than about a second of writes, one informational line otherwise. Never raises."""
    try:
        durability = read_durability(client)
    except redis.RedisError as error:
        logger.warning("could not read Redis's persistence and replication: %s", error)
        return None
    line = "Redis durability: " + describe(durability) + " (see docs/guarantees.md)"
    if durability.weak:
        logger.warning("REDIS MAY LOSE ACCEPTED REQUESTS: %s", line)
    else:
        logger.info(line)
    return durability


def _config(client: redis.Redis, names: tuple[str, ...]) -> dict[str, str]:
    """`CONFIG GET` of each name that the server lets us read (none, on many managed Redis)."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found.update({str(k): str(v) for k, v in client.config_get(name).items()})
        except redis.RedisError:
            return found
    return found


def _int_or_none(value: object) -> int | None:
    try:
        return None if value is None else int(str(value))
    except ValueError:
        return None
