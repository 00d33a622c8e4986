"""kombu's Redis transport, without the broker's bookkeeping for resend tasks.

kombu emulates acknowledgements on Redis: every message a worker takes is written to an
`unacked` hash and index (one round trip), and removed again when it is acknowledged (another),
so that a message whose worker died is put back once the visibility timeout has passed.

A resend task needs neither. Every task message of a request is numbered and the request is
leased in our own due index from the moment its message is pushed (`create.lua`,
`claim_due.lua`) until a run stores what follows (`begin`, `finish`, `save`): the scheduler
republishes a request whose message was lost, after the lease and not after the visibility
timeout, and the fencing token makes a second message of one request a no-op (see
`worker.queueing.scheduler`). So for resend tasks this transport keeps kombu's bookkeeping in
the worker's memory only: the prefetch limit, acknowledgement and requeue on rejection, and
putting back what was taken but not run at shutdown all behave as before, without the two round
trips. Other tasks (callback deliveries) keep kombu's bookkeeping in Redis.

The same holds on TLS (`rediss://`: kombu takes TLS from the app's `broker_use_ssl`) and under
Sentinel (`LeasedSentinelTransport`). For Sentinel, the sentinels come from the transport
option `sentinels`, not from `;`-separated alternates of the broker URL: kombu's failover to
an alternate URL re-reads the transport from that URL's scheme, which would swap this
transport for kombu's own mid-run. A single URL and redis-py's Sentinel, which asks each
sentinel in turn, keep one transport and follow the primary (see `worker.state.connection`).
"""

from __future__ import annotations

import time
from typing import Any

from celery.worker import state as worker_state
from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from redis import Redis
from redis import sentinel as redis_sentinel

from worker.queueing.task_names import RESEND_TASK_NAME

# The app's `broker_transport`. Shown as `redis://...` wherever kombu prints a connection (the
# worker's banner, "Cannot connect to redis://..."), the way kombu shows `pyamqp` as `amqp`.
TRANSPORT_NAME = "tango-redis"
SENTINEL_TRANSPORT_NAME = "tango-redis-sentinel"
# How often a worker's consumer asks for the new primary during a failover.
PRIMARY_POLL_SECONDS = 0.25


def leased_by_us(message: Any) -> bool:
    """Whether a delivered message is a resend task, whose request our own lease covers."""
    headers = getattr(message, "headers", None) or {}
    return bool(headers.get("task") == RESEND_TASK_NAME)


class LeasedQoS(kombu_redis.QoS):
    """kombu's Redis QoS, with resend tasks tracked in memory only (module docstring)."""

    def append(self, message: Any, delivery_tag: Any) -> None:
        if leased_by_us(message):
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        if self._leased(delivery_tag):
            virtual.QoS.ack(self, delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._leased(delivery_tag):
            if requeue:
                self.restore_by_tag(delivery_tag, leftmost=True)
            virtual.QoS.ack(self, delivery_tag)
            return
        super().reject(delivery_tag, requeue=requeue)

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        message = self._message(tag)
        if message is None or not leased_by_us(message):
            super().restore_by_tag(tag, client=client, leftmost=leftmost)
            return
        # Put back from memory what kombu would have read back from its `unacked` hash.
        delivery = message.delivery_info
        channel: Any = self.channel
        with channel.conn_or_acquire(client) as connection:
            pipe = connection.pipeline()
            channel._do_restore_message(
                dict(message._raw), delivery["exchange"], delivery["routing_key"], pipe, leftmost
            )
            pipe.execute()

    def _message(self, delivery_tag: Any) -> Any:
        # Acks come from the pool's threads while the consumer appends: a read is safe (kombu
        # only drops a tag from `_delivered` after it was acknowledged).
        delivered = self._delivered
        return None if delivered is None else delivered.get(delivery_tag)

    def _leased(self, delivery_tag: Any) -> bool:
        message = self._message(delivery_tag)
        return message is not None and leased_by_us(message)


class LeasedChannel(kombu_redis.Channel):
    QoS = LeasedQoS


class LeasedTransport(kombu_redis.Transport):
    """`broker_transport` of the app: kombu's Redis transport with `LeasedQoS`."""

    Channel = LeasedChannel


class LeasedSentinelChannel(kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with `LeasedQoS`, its sentinels read from the transport
    option `sentinels` (module docstring)."""

    QoS = LeasedQoS
    from_transport_options = (*kombu_redis.SentinelChannel.from_transport_options, "sentinels")
    sentinels: list[tuple[str, int]] | None = None

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        channel: Any = self  # kombu is untyped
        if not self.sentinels:
            raise ValueError("the 'sentinels' transport option must be set")
        params = channel._connparams(asynchronous)
        params.pop("host", None)
        params.pop("port", None)
        manager = redis_sentinel.Sentinel(
            [(str(host), int(port)) for host, port in self.sentinels],
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None),
            **params,
        )
        # Kept where kombu keeps its own, so that closing the channel closes the sentinels'
        # connections too.
        if asynchronous:
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        master_name = getattr(self, "master_name", None)
        if master_name is None:
            raise ValueError("the 'master_name' transport option must be set")
        return manager.master_for(master_name, Redis).connection_pool


class LeasedSentinelTransport(kombu_redis.SentinelTransport):
    """`broker_transport` of the app under Sentinel: kombu's with `LeasedSentinelChannel`.

    When a worker's consumer loses the primary, Celery reconnects after 2, 4, 6... seconds
    (up to 30 between tries), so it finds the promoted replica up to that long after the
    promotion: with Sentinel's default 30 s `down-after-milliseconds`, about 10 s late, and
    later still after a slow election. With the transport option `primary_wait_seconds` (the
    app sets it in workers only, see `app.py`) a connection attempt instead asks for the
    primary every quarter second until one answers, and the worker consumes again within a
    quarter second of the promotion. Producers (the web receiver, the CLI) keep failing fast:
    they answer 503 or raise, and their caller retries."""

    Channel = LeasedSentinelChannel

    def establish_connection(self) -> Any:
        options = getattr(self.client, "transport_options", None) or {}
        deadline = time.monotonic() + float(options.get("primary_wait_seconds", 0))
        while True:
            try:
                return super().establish_connection()
            except self.connection_errors:
                if time.monotonic() >= deadline or _worker_stopping():
                    raise
                time.sleep(PRIMARY_POLL_SECONDS)


def _worker_stopping() -> bool:
    """A warm or cold shutdown was asked for (a SIGTERM, SIGINT or SIGQUIT)."""
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


def register() -> None:
    """Make both transports known to kombu (once per process; the app does it on import)."""
    TRANSPORT_ALIASES.setdefault(TRANSPORT_NAME, f"{__name__}:LeasedTransport")
    TRANSPORT_ALIASES.setdefault(SENTINEL_TRANSPORT_NAME, f"{__name__}:LeasedSentinelTransport")
    Connection.resolve_aliases.setdefault(TRANSPORT_NAME, "redis")
    Connection.resolve_aliases.setdefault(SENTINEL_TRANSPORT_NAME, "sentinel")
