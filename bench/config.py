"""Run parameters: `full()` for `make bench`, `quick()` for `make bench-quick` (same scenarios,
smaller sizes). Every figure in `latest.json` is reported next to the parameters it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class OverheadParams:
    """Scenario 1: N distinct orders, 0 ms latency, no rate limit, ours vs the plain task."""

    orders: int
    concurrency: int = 16
    repeats: int = 1
    window_seconds: float = 1.5
    latency_seconds: float = 0.0
    # Seconds of the sandbox capacity probe (same call, same concurrency, no Celery).
    capacity_probe_seconds: float = 3.0


@dataclass(frozen=True)
class LatenessParams:
    """Scenario 2: M orders x k queued resends each, the orders' starts spread over a window."""

    orders: int
    resends_per_order: int
    window_seconds: float
    concurrency: int = 16
    latency_seconds: float = 0.0


@dataclass(frozen=True)
class MakespanRegime:
    """Scenario 3, one configuration: M orders x k resends, window W, latency L, C, R."""

    name: str
    orders: int
    resends_per_order: int
    window_seconds: float
    latency_seconds: float
    concurrency: int
    rate_limit: float  # calls per second; 0 = no limit (the bound's rate term drops out)

    def bound_terms(self) -> dict[str, float]:
        calls = self.orders * self.resends_per_order
        terms = {
            "window": (self.resends_per_order - 1) * self.window_seconds + self.latency_seconds,
            "concurrency": calls * self.latency_seconds / self.concurrency,
        }
        if self.rate_limit > 0:
            terms["rate"] = calls / self.rate_limit
        return terms

    def ideal_seconds(self) -> float:
        return max(self.bound_terms().values())


@dataclass(frozen=True)
class MakespanParams:
    regimes: tuple[MakespanRegime, ...]


@dataclass(frozen=True)
class RateLimitParams:
    """Scenario 4: a backlog of N distinct orders under a rate limit R (the sandbox enforces R
    too, answering 429 to any call over it)."""

    orders: int
    rate_limit: float
    concurrency: int = 16
    window_seconds: float = 1.5
    latency_seconds: float = 0.02


@dataclass(frozen=True)
class ParkedParams:
    """Scenarios 5 and 7: requests of distinct orders whose windows are held for a long time
    (as a resend just before would leave them), so every request is parked in Redis."""

    idle_requests: int  # waiting while the worker's idle CPU is measured
    parked_requests: int  # waiting when memory is measured (includes the idle ones)
    idle_measure_seconds: float
    concurrency: int = 16
    window_seconds: float = 1800.0


@dataclass(frozen=True)
class RedisOpsParams:
    """Scenario 6: Redis commands per resend, for distinct orders and for queued resends."""

    orders: int
    queued_orders: int  # orders with 2 resends each (the second waits for the window)
    concurrency: int = 16
    window_seconds: float = 1.0


@dataclass(frozen=True)
class ProfileParams:
    """One profiled run of the pipeline (solo pool, so pyinstrument sees the task thread)."""

    orders: int


@dataclass(frozen=True)
class CostParams:
    """CPU per resend by category (bench/cost_sampler.py): the overhead workload (N distinct
    orders queued first, 0 ms latency, no rate limit, one worker, threads x C) for ours and
    the plain task, in turns; tango-resend before this round from bench/results/cost_before.json.
    """

    orders: int
    repeats: int = 1
    concurrency: int = 16
    window_seconds: float = 1.5
    # The sampler's period; the figures are the CPU between these two fractions of the answers
    # (the steady drain: no start-up, no tail with fewer tasks than threads).
    interval_seconds: float = 0.001
    # The worker's GIL switch interval while sampled (bench/cost_sampler.py says why: at
    # Python's 5 ms every sample lands on an I/O call); its extra switches cost CPU too.
    switch_interval_seconds: float = 0.0001
    from_fraction: float = 0.1
    to_fraction: float = 0.9


@dataclass(frozen=True)
class DeployParams:
    """A rate-limited backlog across a rolling deploy: a new worker under a new name, then
    SIGTERM (warm shutdown) to the old one, mid-backlog."""

    backlog_orders: int  # one request each
    windowed_orders: int  # orders resent in Tango's portal just before: their first call
    # meets the window (403.005) and they wait it out
    window_seconds: float
    deploy_after_calls: int  # the new worker starts once this many calls reached Tango
    rate_limit: float = 1.0  # the fleet's default
    # The sandbox enforces its own limit a little above ours (still 1 call in any second).
    sandbox_rate_limit: float = 1.2
    concurrency: int = 16


@dataclass(frozen=True)
class KillParams:
    """A worker SIGKILLed with requests mid-wait and calls in flight, then a replacement under
    a new name; the production visibility timeout (300 s), so the broker cannot be what
    recovers anything, and the default lease."""

    orders: int
    requests_per_order: int
    window_seconds: float
    slow_orders: int  # their first call stalls `slow_call_seconds` after Tango acted
    slow_call_seconds: float
    # Tango's own work on a slow call before it resends (then it stalls): a resend later
    # after our call started than a probe takes to reach Tango, so the probe can prove it.
    slow_process_seconds: float = 0.3
    rate_limit: float = 1.0  # the fleet's default
    sandbox_rate_limit: float = 1.2
    concurrency: int = 8
    visibility_timeout_seconds: int = 300
    read_timeout_seconds: float = 2.0
    connect_timeout_seconds: float = 0.5
    # The kill waits (at most this long) for a moment the worker holds a task it has begun but
    # is not calling Tango for (waiting in-thread for its rate slot): the case the lease is for.
    catch_held_seconds: float = 15.0


@dataclass(frozen=True)
class WebhookParams:
    """A storm of signed webhooks for distinct orders at each receiver, in turns."""

    webhooks: int
    rounds: int
    senders: int = 8
    warmup: int = 200


@dataclass(frozen=True)
class BulkParams:
    """A CSV file of `rows` distinct resends queued by `tango-resend enqueue --file`, against
    a plain loop of Celery `send_task` calls for the same rows; `repeats` turns of each."""

    rows: int
    repeats: int = 1
    timeout_seconds: float = 900.0


@dataclass(frozen=True)
class DurableParams:
    """The overhead ratio with REDIS_WAIT_REPLICAS=1 on a primary and a replica of the run's
    own, against a plain Celery task making the same call behind the same WAITs."""

    orders: int
    repeats: int
    concurrency: int = 16
    wait_timeout_ms: int = 500


@dataclass(frozen=True)
class FailoverParams:
    """A Sentinel set (primary, two replicas, three sentinels) whose primary is SIGKILLed
    while webhooks and bulk enqueues arrive and calls are in flight (tests/support/
    failover_run.py); REDIS_WAIT_REPLICAS=1, and with `also_without_wait` the same run with 0
    (its figures in the details)."""

    orders: int
    window_seconds: float = 1.5
    slow_answer_seconds: float = 1.0
    load_seconds_before: float = 2.0
    load_seconds_after: float = 3.0
    also_without_wait: bool = False


@dataclass(frozen=True)
class BenchParams:
    mode: str
    overhead: OverheadParams
    lateness: LatenessParams
    makespan: MakespanParams
    rate_limit: RateLimitParams
    parked: ParkedParams
    redis_ops: RedisOpsParams
    profile: ProfileParams
    cost: CostParams
    deploy: DeployParams
    kill: KillParams
    webhook: WebhookParams
    bulk: BulkParams
    durable: DurableParams
    failover: FailoverParams
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["makespan"]["regimes"] = [
            {**asdict(regime), "ideal_seconds": regime.ideal_seconds()}
            for regime in self.makespan.regimes
        ]
        return data


def full() -> BenchParams:
    return BenchParams(
        mode="full",
        overhead=OverheadParams(orders=3000, repeats=3),
        lateness=LatenessParams(orders=200, resends_per_order=5, window_seconds=2.0),
        makespan=MakespanParams(
            regimes=(
                MakespanRegime("window-bound", 100, 4, 2.0, 0.05, 16, 0.0),
                MakespanRegime("latency-bound", 320, 2, 1.0, 0.2, 16, 0.0),
                MakespanRegime("rate-bound", 150, 3, 1.0, 0.02, 16, 40.0),
            )
        ),
        rate_limit=RateLimitParams(orders=600, rate_limit=20.0),
        parked=ParkedParams(idle_requests=10_000, parked_requests=50_000, idle_measure_seconds=30),
        redis_ops=RedisOpsParams(orders=1000, queued_orders=200),
        profile=ProfileParams(orders=1500),
        cost=CostParams(orders=2000, repeats=3),
        deploy=DeployParams(
            backlog_orders=30, windowed_orders=3, window_seconds=20.0, deploy_after_calls=14
        ),
        kill=KillParams(
            orders=8,
            requests_per_order=3,
            # Longer than the lease (15 s) plus a call's bound: a cut-off call's probe lands
            # inside Tango's window, as with production's 30 s window.
            window_seconds=20.0,
            slow_orders=3,
            slow_call_seconds=5.0,
        ),
        webhook=WebhookParams(webhooks=2000, rounds=5),
        bulk=BulkParams(rows=100_000),
        durable=DurableParams(orders=3000, repeats=3),
        failover=FailoverParams(orders=8, also_without_wait=True),
    )


def quick() -> BenchParams:
    return BenchParams(
        mode="quick",
        overhead=OverheadParams(orders=1000, repeats=3, capacity_probe_seconds=2.0),
        lateness=LatenessParams(orders=60, resends_per_order=4, window_seconds=1.5),
        makespan=MakespanParams(
            regimes=(
                MakespanRegime("window-bound", 30, 3, 1.5, 0.05, 16, 0.0),
                MakespanRegime("latency-bound", 160, 2, 1.0, 0.2, 16, 0.0),
                MakespanRegime("rate-bound", 50, 3, 1.0, 0.02, 16, 40.0),
            )
        ),
        rate_limit=RateLimitParams(orders=160, rate_limit=20.0),
        parked=ParkedParams(idle_requests=2_000, parked_requests=5_000, idle_measure_seconds=8),
        redis_ops=RedisOpsParams(orders=300, queued_orders=60),
        profile=ProfileParams(orders=400),
        cost=CostParams(orders=1000, repeats=2),
        deploy=DeployParams(
            backlog_orders=20, windowed_orders=3, window_seconds=12.0, deploy_after_calls=9
        ),
        kill=KillParams(
            orders=6,
            requests_per_order=2,
            window_seconds=20.0,
            slow_orders=2,
            slow_call_seconds=5.0,
        ),
        webhook=WebhookParams(webhooks=2000, rounds=3),
        bulk=BulkParams(rows=20_000),
        durable=DurableParams(orders=1000, repeats=2),
        failover=FailoverParams(orders=6),
        notes=[
            "quick mode: smaller sizes than the issue's (e.g. 5,000 parked requests instead of "
            "50,000 and 2,000 waiting requests instead of 10,000); run `make bench` for those",
            "quick mode: the bulk file has 20,000 rows instead of the issue's 100,000",
        ],
    )
