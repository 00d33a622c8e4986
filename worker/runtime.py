"""The per-process objects: Redis client, stores, gate and (in workers) the Tango client.

Built on first use in each process, so a prefork child never shares a socket with its parent.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis

from worker.core.settings import Settings, get_settings
from worker.state import scripts
from worker.state.call_marker import CallMarker
from worker.state.clock import RedisClock
from worker.state.connection import AsyncRedis, redis_client
from worker.state.durability import ReplicaWait
from worker.state.gate import MARKER_KEEP_SECONDS, CallGate
from worker.state.keys import RedisKeys
from worker.state.metrics import MetricsRecorder
from worker.state.outage import TangoOutage
from worker.state.records import RecordStore

if TYPE_CHECKING:
    from worker.tango.client import TangoClient


class AsyncCreate:
    """The create script on an asyncio Redis client, for an event loop (the webhook receiver).

    asyncio connections belong to the loop that opened them: open this in the loop that uses
    it, and `aclose` it there (the receiver's lifespan does both).
    """

    def __init__(self, settings: Settings) -> None:
        self._redis = AsyncRedis(settings)
        self._script = scripts.load("create").bind(self._redis.client)
        self._wait = ReplicaWait.from_settings(settings)

    async def __call__(self, keys: dict[str, str], args: dict[str, scripts.ScriptValue]) -> Any:
        """The create script's reply; with REDIS_WAIT_REPLICAS set, only once the request is
        on that many replicas (the script and WAIT in one pipeline, on one connection).

        Raises:
            NotReplicated: the request may be stored, but is not on the replicas yet.
        """
        if self._wait is None:
            return await self._script(keys=keys, args=args)
        async with self._redis.client.pipeline(transaction=False) as pipe:
            await self._script.queue_async(pipe, keys, args)
            self._wait.queue(pipe)
            reply, acknowledged = await pipe.execute()
        self._wait.require(acknowledged, "the request")
        return reply

    async def aclose(self) -> None:
        await self._redis.aclose()


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.redis = redis_client(self.settings)

    @cached_property
    def keys(self) -> RedisKeys:
        return RedisKeys(self.settings.redis_key_prefix)

    @cached_property
    def records(self) -> RecordStore:
        return RecordStore(
            self.redis,
            self.keys,
            self.settings.resend_record_ttl_seconds,
            callbacks=self.settings.result_webhook_url is not None,
            clock=self.clock,
            pending_counts=self.metrics.take_pending,
            wait=self.replica_wait,
        )

    @cached_property
    def gate(self) -> CallGate:
        return CallGate(
            self.redis,
            self.keys,
            self.settings.tango_rate_limit,
            stall_seconds=self.settings.resend_stall_bound_seconds,
            marker_keep_seconds=self.marker_keep_seconds,
            wait=self.replica_wait,
        )

    @property
    def marker_keep_seconds(self) -> float:
        """How long the order's call marker keeps a call past the last moment it could act:
        well past any window a refusal proof asks about."""
        settings = self.settings
        longest = settings.tango_connect_timeout_seconds + settings.tango_timeout_seconds
        reach = settings.resend_window_seconds + longest + settings.resend_stall_bound_seconds
        return MARKER_KEEP_SECONDS + 2 * reach

    @cached_property
    def call_marker(self) -> CallMarker:
        return CallMarker(self.redis, self.keys, self.marker_keep_seconds)

    @cached_property
    def replica_wait(self) -> ReplicaWait | None:
        """REDIS_WAIT_REPLICAS and its timeout (None: 0, nothing waits for replicas)."""
        return ReplicaWait.from_settings(self.settings)

    @cached_property
    def metrics(self) -> MetricsRecorder:
        return MetricsRecorder(self.redis, self.keys)

    @cached_property
    def outage(self) -> TangoOutage:
        """The fleet's mark that Tango is down (worker/state/outage.py)."""
        return TangoOutage(self.redis, self.keys)

    @cached_property
    def clock(self) -> RedisClock:
        return RedisClock(self.redis)

    def warm_up(self) -> None:
        """Build what every run uses and load every script into Redis now, so that a fresh
        worker's first tasks do not do it while its first calls are on their way to Tango."""
        _ = (self.records, self.gate, self.metrics, self.tango)
        self.clock.timestamp()
        self.call_marker.open_epoch()
        with self.redis.pipeline(transaction=False) as pipe:
            for name in scripts.script_names():
                pipe.script_load(scripts.load(name).source)
            pipe.execute()

    @cached_property
    def tango(self) -> TangoClient:
        # Imported here: only workers call Tango, and a producer installs no HTTP client.
        from worker.tango.auth import build_authorizer
        from worker.tango.client import TangoClient, build_session

        session = build_session(self.settings.worker_concurrency)
        authorizer = build_authorizer(
            self.settings, self.redis, session, self.keys, metrics=self.metrics
        )
        return TangoClient(self.settings, session, authorizer)


_lock = threading.Lock()
_runtime: Runtime | None = None
_runtime_pid: int | None = None


def current_runtime() -> Runtime:
    """This process's runtime, built from its settings on first use (and again after a fork)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = Runtime(get_settings())
            _runtime_pid = os.getpid()
        return _runtime


def reset_runtime() -> None:
    """Drop the cached runtime (tests change settings between cases)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.redis.close()
        _runtime = None
        _runtime_pid = None
