"""The fast broker transport (no `unacked` bookkeeping for resend tasks) on a TLS Redis with an
ACL user and on a Sentinel-managed set, configured exactly as the app configures Celery
(`celery_config`). Real redis-server processes started by the test
(tests/support/redis_topology.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.exceptions import OperationalError

from tests.support.redis_topology import SentinelTopology, TlsRedis
from worker.core.settings import Settings
from worker.queueing.app import DELIVER_TASK_NAME, RESEND_TASK_NAME, celery_config

pytestmark = pytest.mark.integration

QUEUE = "topology-transport-test"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    with TlsRedis(Path(tmp_path_factory.mktemp("tls"))) as server:
        yield server


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    workdir = Path(tmp_path_factory.mktemp("ha"))
    with SentinelTopology(workdir, password="data-nodes-pw", sentinel_password="sentinel-pw") as ha:
        yield ha


def broker_connection(settings: Settings) -> Connection:
    """A kombu connection with the app's own broker settings."""
    config = celery_config(settings)
    return Connection(
        config["broker_url"],
        transport=config.get("broker_transport"),
        ssl=config.get("broker_use_ssl") or False,
        transport_options=config["broker_transport_options"],
    )


def publish(connection: Connection, task: str, task_id: str) -> None:
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


def take_both_then_ack(connection: Connection, data: redis.Redis) -> tuple[int, int]:
    """Publish a resend task and a callback task, take both; returns how many `unacked`
    entries Redis holds while both are unacknowledged, and after both are acknowledged."""
    publish(connection, RESEND_TASK_NAME, "resend-1")
    publish(connection, DELIVER_TASK_NAME, "deliver-1")
    channel: Any = connection.channel()
    messages = [channel.basic_get(QUEUE, no_ack=False) for _ in range(2)]
    assert all(message is not None for message in messages)
    while_held = int(data.hlen("unacked"))
    for message in messages:
        message.ack()
    after = int(data.hlen("unacked"))
    channel.close()
    assert data.llen(QUEUE) == 0
    return while_held, after


def test_the_fast_transport_runs_on_tls_with_an_acl_user(tls_redis: TlsRedis) -> None:
    settings = Settings(redis_url=tls_redis.url(3), redis_tls_ca_file=str(tls_redis.ca_file))
    config = celery_config(settings)
    assert config["broker_transport"] == "tango-rediss"
    assert config["broker_use_ssl"]["ssl_ca_certs"] == str(tls_redis.ca_file)
    data = tls_redis.client()
    data.select(3)
    data.flushdb()
    with broker_connection(settings) as connection:
        # Only the callback task is booked in Redis: the resend task skipped it.
        assert take_both_then_ack(connection, data) == (1, 0)


def test_the_broker_refuses_a_tls_server_it_cannot_verify(tls_redis: TlsRedis) -> None:
    # Without the CA file the system's CAs are used, and they did not sign the test's server:
    # kombu's own default for rediss:// would have connected without checking anything.
    settings = Settings(redis_url=tls_redis.url(3))
    with (
        broker_connection(settings) as connection,
        pytest.raises(OperationalError, match="certificate verify failed"),
    ):
        connection.ensure_connection(max_retries=1)


def test_the_fast_transport_runs_under_sentinel(sentinel_set: SentinelTopology) -> None:
    settings = Settings(
        redis_url=sentinel_set.url(4),
        redis_sentinel_master=sentinel_set.master_name,
        redis_sentinel_password="sentinel-pw",
    )
    config = celery_config(settings)
    assert config["broker_transport"] == "tango-redis-sentinel"
    assert len(config["broker_transport_options"]["sentinels"]) == 3
    data = sentinel_set.primary_client()
    data.select(4)
    data.flushdb()
    with broker_connection(settings) as connection:
        assert take_both_then_ack(connection, data) == (1, 0)


def test_the_broker_finds_the_primary_when_the_first_sentinel_is_down(
    sentinel_set: SentinelTopology,
) -> None:
    settings = Settings(
        redis_url=sentinel_set.url(4),
        redis_sentinel_master=sentinel_set.master_name,
        redis_sentinel_password="sentinel-pw",
    )
    first = sentinel_set.sentinels[0]
    first.kill()
    try:
        data = sentinel_set.primary_client()
        data.select(4)
        with broker_connection(settings) as connection:
            publish(connection, RESEND_TASK_NAME, "resend-2")
            assert data.llen(QUEUE) == 1
            data.delete(QUEUE)
    finally:
        first.start()


def test_a_worker_connection_waits_for_the_promoted_replica_instead_of_backing_off(
    tmp_path: Path,
) -> None:
    """Given the primary just died, when a worker's broker connection (transport option
    `primary_wait_seconds`, set in workers only) connects, then it returns once a replica is
    promoted; a producer's (no option) fails at once, for its caller to answer 503."""
    with SentinelTopology(tmp_path / "ha") as ha:
        settings = Settings(redis_url=ha.url(5), redis_sentinel_master=ha.master_name)
        old = ha.kill_primary()
        producer = broker_connection(settings)
        started = time.monotonic()
        with pytest.raises(OperationalError):
            producer.ensure_connection(max_retries=1)
        assert time.monotonic() - started < 10
        producer.release()

        worker = broker_connection(settings)
        worker.transport_options["primary_wait_seconds"] = 30
        worker.connect()  # blocks until a primary answers
        connected_at = time.time()
        new = ha.wait_for_promotion(old)
        # It waited for the promotion (detection alone takes 1 s), and not much longer.
        assert connected_at - ha.killed_at > 1.0
        assert connected_at - ha.promoted_at < 1.0
        publish(worker, RESEND_TASK_NAME, "after-failover")
        data = new.client()
        data.select(5)
        assert data.llen(QUEUE) == 1
        worker.release()
