"""The broker transport: resend tasks skip kombu's `unacked` bookkeeping in Redis, and
everything that bookkeeping did in the worker (prefetch, ack, requeue, putting back at
shutdown) still happens. Real Redis, real kombu channels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from tests.support.redis_db import TEST_REDIS_URL
from worker.core.settings import Settings
from worker.queueing.app import DELIVER_TASK_NAME, RESEND_TASK_NAME, celery_config
from worker.queueing.transport import LeasedTransport

QUEUE = "transport-test"


@pytest.fixture
def connection(redis_client: redis.Redis) -> Iterator[Connection]:
    with Connection(TEST_REDIS_URL, transport=LeasedTransport) as conn:
        yield conn


def _publish(connection: Connection, task: str, task_id: str) -> None:
    exchange = Exchange(QUEUE, type="direct")
    queue = Queue(QUEUE, exchange, routing_key=QUEUE)
    with connection.Producer() as producer:
        producer.publish(
            {"args": [task_id]},
            exchange=exchange,
            routing_key=QUEUE,
            declare=[queue],
            headers={"task": task, "id": task_id},
            serializer="json",
        )


def _take(channel: Any) -> Any:
    message = channel.basic_get(QUEUE, no_ack=False)
    assert message is not None
    return message


def _queued_ids(client: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(QUEUE, 0, -1)]


@pytest.mark.parametrize(
    ("task", "kept_in_redis"),
    [(RESEND_TASK_NAME, 0), (DELIVER_TASK_NAME, 1)],
    ids=["resend-task-in-memory-only", "other-tasks-keep-kombus-bookkeeping"],
)
def test_only_resend_tasks_skip_the_unacked_hash(
    connection: Connection, redis_client: redis.Redis, task: str, kept_in_redis: int
) -> None:
    _publish(connection, task, "t1")
    channel = connection.channel()
    message = _take(channel)
    assert redis_client.hlen("unacked") == kept_in_redis
    assert redis_client.zcard("unacked_index") == kept_in_redis
    assert channel.qos.get(message.delivery_tag) is message  # counted in memory either way
    message.ack()
    assert redis_client.hlen("unacked") == 0
    channel.close()
    assert redis_client.llen(QUEUE) == 0  # acknowledged: not put back at close


def test_a_rejected_resend_task_goes_back_to_its_queue_marked_redelivered(
    connection: Connection, redis_client: redis.Redis
) -> None:
    for task_id in ("r1", "r2"):
        _publish(connection, RESEND_TASK_NAME, task_id)
    channel = connection.channel()
    first = _take(channel)
    first.reject(requeue=True)
    queued = {
        payload["headers"]["id"]: payload
        for payload in map(json.loads, redis_client.lrange(QUEUE, 0, -1))
    }
    assert sorted(queued) == ["r1", "r2"]
    assert queued["r1"]["headers"]["redelivered"] is True
    assert redis_client.hlen("unacked") == 0
    for _ in range(2):
        _take(channel).reject(requeue=False)
    channel.close()
    assert redis_client.llen(QUEUE) == 0


def test_what_was_taken_and_not_acknowledged_goes_back_when_the_channel_closes(
    connection: Connection, redis_client: redis.Redis
) -> None:
    for task_id in ("r1", "r2", "r3"):
        _publish(connection, RESEND_TASK_NAME, task_id)
    channel = connection.channel()
    taken = [_take(channel) for _ in range(2)]
    taken[0].ack()
    channel.close()  # a worker's warm shutdown closes its channel like this
    assert sorted(_queued_ids(redis_client)) == ["r2", "r3"]
    assert redis_client.hlen("unacked") == 0


def test_the_prefetch_limit_still_counts_resend_tasks(
    connection: Connection, redis_client: redis.Redis
) -> None:
    for task_id in ("r1", "r2"):
        _publish(connection, RESEND_TASK_NAME, task_id)
    channel = connection.channel()
    channel.basic_qos(prefetch_size=0, prefetch_count=1, apply_global=False)
    message = _take(channel)
    assert not channel.qos.can_consume()
    message.ack()
    channel.qos._flush()
    assert channel.qos.can_consume()
    channel.close()


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://127.0.0.1:6379/3", "tango-redis"),
        ("rediss://redis.example.com:6380/0", "tango-redis"),
        ("sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/2", "tango-redis-sentinel"),
        ("unix:///run/redis.sock?db=1", None),
    ],
)
def test_the_app_uses_the_fast_transport_on_tcp_tls_and_sentinel(
    url: str, transport: str | None
) -> None:
    config = celery_config(Settings(redis_url=url))
    assert config.get("broker_transport") == transport


def test_connections_still_read_as_redis_urls_in_logs() -> None:
    # "consumer: Cannot connect to redis://..." is what operators (and our chaos tests) look for.
    with Connection("redis://127.0.0.1:6379/3") as kombus:
        shown = kombus.as_uri()
    with Connection("redis://127.0.0.1:6379/3", transport="tango-redis") as conn:
        assert conn.as_uri() == shown == "redis://:**@127.0.0.1:6379/3"
        assert conn.get_transport_cls() is LeasedTransport
