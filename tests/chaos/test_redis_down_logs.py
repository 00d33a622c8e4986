"""Redis unreachable, as operators read it: a worker (with its scheduler, callback delivery
threads and metrics endpoint) and the web receiver log one line when it starts and one when
it ends, not a traceback a second; /metrics keeps answering from memory meanwhile."""

from __future__ import annotations

import time

import pytest

from tests.support.metrics import samples, scrape
from tests.support.processes import WebFactory, WorkerFactory, free_port
from tests.support.redis_server import RedisServer
from tests.support.settings import Configure
from tests.support.waiting import wait_for

pytestmark = pytest.mark.chaos

OUTAGE_SECONDS = 8.0


def redis_up(url: str) -> float | None:
    text = scrape(url)
    if text is None:
        return None
    values, _ = samples(text)
    return values.get(("tango_resend_redis_up", ()))


def test_redis_down_is_one_line_when_it_starts_and_one_when_it_ends(
    own_redis: RedisServer,
    configure: Configure,
    start_worker: WorkerFactory,
    start_web: WebFactory,
) -> None:
    port = free_port()
    env = configure(
        redis_url=own_redis.url(),
        METRICS_PORT=str(port),
        RESULT_WEBHOOK_URL="http://127.0.0.1:9/outcomes",
        RESULT_WEBHOOK_SECRET="whsec_" + "b3V0Y29tZXMtc2VjcmV0LWZvci10aGUtdGVzdC0wMTI=",
        RESULT_WEBHOOK_CONCURRENCY="2",
        API_TOKEN="an-api-token-for-the-redis-down-test-0123",
        WEBHOOK_SECRET="whsec_" + "cmVkaXMtZG93bi1sb2dzLXRlc3Qtc2VjcmV0LTAxMjM=",
    )
    worker = start_worker(env, "w1", concurrency=4)
    web = start_web(env)
    metrics = f"http://127.0.0.1:{port}/metrics"
    assert redis_up(metrics) == 1.0
    worker_before = len(worker.log().splitlines())

    own_redis.stop()
    down_at = time.monotonic()
    wait_for(lambda: redis_up(metrics) == 0.0, timeout=10, what="redis_up 0 from memory")
    assert redis_up(f"{web.url}/metrics") == 0.0
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    while_down = worker.log().splitlines()[worker_before:]
    own_redis.start()
    wait_for(
        lambda: "Redis answers again" in worker.log(), timeout=20, what="the worker's end line"
    )

    assert "Traceback" not in "\n".join(while_down), "\n".join(while_down)
    assert sum("Redis is unreachable" in line for line in while_down) == 1, while_down
    # The start line, and perhaps Celery's own "Connected"/reconnection notes: a handful, not
    # the 40-line traceback a second of before (over 300 lines in 8 s).
    assert len(while_down) <= 4, while_down
    assert redis_up(metrics) == 1.0
