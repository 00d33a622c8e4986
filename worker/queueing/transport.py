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
"""

from __future__ import annotations

from typing import Any

from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis

from worker.queueing.task_names import RESEND_TASK_NAME

# The app's `broker_transport`. Shown as `redis://...` wherever kombu prints a connection (the
# worker's banner, "Cannot connect to redis://..."), the way kombu shows `pyamqp` as `amqp`.
TRANSPORT_NAME = "tango-redis"


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


def register() -> None:
    """Make `TRANSPORT_NAME` known to kombu (once per process; the app does it on import)."""
    TRANSPORT_ALIASES.setdefault(TRANSPORT_NAME, f"{__name__}:LeasedTransport")
    Connection.resolve_aliases.setdefault(TRANSPORT_NAME, "redis")
