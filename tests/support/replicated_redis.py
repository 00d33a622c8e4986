"""A primary and a replica (`--replicaof`) of a test's own, for tests of REDIS_WAIT_REPLICAS.

The replica can be frozen (SIGSTOP) and thawed (SIGCONT): while it is frozen the primary
keeps its link but no write is acknowledged, so `WAIT 1 timeout` answers 0 — what a replica
that fell behind, or a network cut between the two, looks like to the primary. The shared
Redis of the other tests (TEST_REDIS_URL) is never touched.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for


class ReplicatedRedis:
    """`primary` and `replica` on free loopback ports; the replica follows the primary."""

    def __init__(self, workdir: Path, *, appendfsync: str = "everysec") -> None:
        self.primary = RedisServer(workdir / "primary", appendfsync=appendfsync)
        self.replica_dir = workdir / "replica"
        self.replica: RedisServer | None = None
        self.frozen = False

    def start(self) -> ReplicatedRedis:
        self.primary.start()
        self.replica = RedisServer(
            self.replica_dir,
            extra_args=("--replicaof", "127.0.0.1", str(self.primary.port)),
        ).start()
        wait_for(self.in_sync, timeout=30, interval=0.05, what="the replica to be in sync")
        return self

    def url(self, db: int = 0) -> str:
        return self.primary.url(db)

    def in_sync(self) -> bool:
        """The primary sees one replica online, at its own replication offset."""
        with contextlib.closing(self.primary.client()) as client:
            info = client.info("replication")
        replica = info.get("slave0")
        return (
            isinstance(replica, dict)
            and replica.get("state") == "online"
            and int(replica.get("offset", -1)) == int(info["master_repl_offset"])
        )

    def freeze_replica(self) -> None:
        """SIGSTOP the replica: from now on WAIT gets no acknowledgement."""
        assert self.replica is not None and self.replica.process is not None
        self.replica.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw_replica(self) -> None:
        """SIGCONT the replica, and wait until it caught up."""
        assert self.replica is not None and self.replica.process is not None
        self.replica.process.send_signal(signal.SIGCONT)
        self.frozen = False
        wait_for(self.in_sync, timeout=30, interval=0.05, what="the replica to catch up")

    @contextlib.contextmanager
    def replica_frozen(self) -> Iterator[None]:
        self.freeze_replica()
        try:
            yield
        finally:
            self.thaw_replica()

    def __enter__(self) -> ReplicatedRedis:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.frozen:
            self.thaw_replica()
        if self.replica is not None:
            self.replica.stop()
        self.primary.stop()
