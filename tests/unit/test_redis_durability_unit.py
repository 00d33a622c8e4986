"""The persistence line `doctor` and the start-up log give, for readings no test server of
ours produces (tests/ops/test_redis_setups.py has the real servers): `appendfsync no`, CONFIG
disabled, a replica instead of the primary, snapshots only."""

from __future__ import annotations

from dataclasses import replace

from worker.state.redis_durability import Durability, describe

PRIMARY = Durability(
    aof=True,
    appendfsync="everysec",
    rdb_rules="",
    role="master",
    connected_replicas=0,
    min_replicas_to_write=0,
    min_replicas_max_lag=10,
)


def test_appendfsync_no_is_weak_and_says_how_much_a_host_crash_loses() -> None:
    durability = replace(PRIMARY, appendfsync="no")
    assert durability.weak
    assert describe(durability).startswith("AOF on, appendfsync no: the OS flushes when it likes")


def test_a_managed_redis_without_config_is_reported_as_unknown_not_guessed() -> None:
    durability = replace(PRIMARY, appendfsync=None, min_replicas_to_write=None)
    assert not durability.weak  # AOF is on (INFO says so); its fsync is merely unknown
    text = describe(durability)
    assert "appendfsync not readable (CONFIG is disabled on this Redis)" in text
    assert "min-replicas-to-write not readable" in text


def test_snapshots_without_aof_lose_what_came_after_the_last_one() -> None:
    durability = replace(PRIMARY, aof=False, appendfsync=None, rdb_rules="3600 1 300 100")
    assert durability.weak
    assert describe(durability).startswith(
        "AOF off (RDB snapshots only, save 3600 1 300 100): a restart loses every write since "
        "the last snapshot"
    )


def test_a_replica_is_named_as_not_the_primary() -> None:
    assert "this Redis is a slave, not the primary" in describe(replace(PRIMARY, role="slave"))


def test_replicas_and_min_replicas_to_write_are_named() -> None:
    text = describe(replace(PRIMARY, connected_replicas=2, min_replicas_to_write=1))
    assert "2 replica(s) connected: a failover can lose the writes they had not received" in text
    assert "min-replicas-to-write 1: writes are refused while fewer than 1 replica(s)" in text
