"""Scenario `overhead_tls`: the `overhead` figure again, on a Redis that speaks only TLS.

A managed Redis is reached over TLS with an ACL user. The same workload as `overhead` (N
distinct orders queued first, 0 ms latency, one worker each, same pool and concurrency), ours
against the plain Celery task, both on a `redis-server --tls-port` of the benchmark's own (its
certificate signed by a CA made for the run, the `default` user off, an ACL user in the URL,
tests/support/redis_topology.py). Both sides pay for TLS; the ratio says whether our pipeline's
extra round trips cost more once each one is encrypted. No sandbox capacity probe: `overhead`
has it, and the sandbox is the same.
"""

from __future__ import annotations

import dataclasses

from bench.config import OverheadParams
from bench.harness import RedisProbe
from bench.scenarios import overhead
from bench.scenarios.common import Context, ScenarioResult
from tests.support.redis_topology import TlsRedis
from worker.core.settings import Settings
from worker.state.connection import redis_client

# A database of its own on the benchmark's own server (which it flushes per scenario anyway).
TLS_DB = 1


def run(ctx: Context, p: OverheadParams) -> ScenarioResult:
    with TlsRedis(ctx.log_dir / "tls-redis") as server:
        settings = server.settings(TLS_DB)
        client = redis_client(
            Settings(redis_url=settings["REDIS_URL"], redis_tls_ca_file=str(server.ca_file))
        )
        probe = RedisProbe(settings["REDIS_URL"], client=client)
        tls_ctx = dataclasses.replace(
            ctx, probe=probe, redis_settings={"REDIS_TLS_CA_FILE": str(server.ca_file)}
        )
        try:
            result = overhead.run(tls_ctx, dataclasses.replace(p, capacity_probe_seconds=0))
        finally:
            probe.close()
    details = {
        key: value
        for key, value in result.details.items()
        if key not in ("sandbox_capacity", "sandbox_headroom")
    }
    details["redis"] = "redis-server --port 0 --tls-port P, ACL user, CA of the run's own"
    return ScenarioResult(
        metrics={"overhead_ratio_tls": result.metrics["overhead_ratio"]},
        details=details,
        series={},
    )
