"""A worker warms up at start: what every run uses is built and every script is in Redis."""

from __future__ import annotations

import redis

from tests.support.runtime import RuntimeFactory
from worker.state import scripts


def test_warm_up_loads_every_script_and_builds_what_runs_use(
    make_runtime: RuntimeFactory, redis_client: redis.Redis
) -> None:
    runtime = make_runtime(TANGO_PLATFORM_NAME="platform", TANGO_PLATFORM_KEY="key-0123456789")
    redis_client.script_flush()
    shas = [redis_client.script_load(scripts.load(name).source) for name in scripts.script_names()]
    redis_client.script_flush()
    assert not any(redis_client.script_exists(*shas))

    runtime.warm_up()

    assert all(redis_client.script_exists(*shas))
    for built in ("records", "gate", "metrics", "tango", "clock"):
        assert built in vars(runtime), f"{built} is built by the first task, not at start"
