"""One failover under load, measured: the chaos test's and the bench's (`failover_*`) run.

A worker and the webhook receiver point at a Sentinel set (tests/support/redis_topology.py)
with a second replica added, as a set run with REDIS_WAIT_REPLICAS=1 should have;
this process is the application that calls `submit_many` (what `tango-resend enqueue --file`
does) and the sender that posts webhooks. Every Tango call is slow (Tango acts at once and
answers `slow_answer_seconds` later), so calls are in flight when the primary is SIGKILLed.
The load goes on through the promotion; the killed node is restarted at once, and rejoins as
a replica (with REDIS_WAIT_REPLICAS=1 nothing is acknowledged until some replica is back).

Figures: `lost`, requests that got a 202 or an id and did not end `sent`; `duplicates`,
resends Tango made beyond the first of a request; `inside_window`, resends of one order less
than a window apart; `resume_s`, from the promotion to the first call to Tango after it.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from tests.support.calls import accepted_sends, etid_of, resend_calls, windows_respected
from tests.support.processes import StartedProcesses
from tests.support.receiver import post_webhook
from tests.support.redis_topology import RedisNode, SentinelTopology
from tests.support.waiting import wait_for
from worker import get_resend
from worker.core.errors import RedisUnavailable
from worker.resend.producer import Submission, submit_many
from worker.sandbox import SandboxControl

FAILOVER_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"failover-run-webhook-secret-01").decode()


@dataclass(frozen=True)
class FailoverLoad:
    """The load's shape: `orders` orders, a webhook every `webhook_every_seconds`, a batch of
    `batch_rows` rows every `batch_every_seconds`, for `load_seconds_before` before the kill
    and `load_seconds_after` after the promotion."""

    orders: int = 8
    slow_answer_seconds: float = 1.0
    webhook_every_seconds: float = 0.25
    batch_every_seconds: float = 1.0
    batch_rows: int = 3
    load_seconds_before: float = 2.0
    load_seconds_after: float = 3.0
    settle_timeout_seconds: float = 120.0


@dataclass
class FailoverFigures:
    promised: int
    lost: list[str]
    duplicates: int
    inside_window: list[str]
    resume_s: float
    promoted_after_s: float
    longest_refusal_s: float
    calls_in_flight_at_kill: int
    answers: dict[int, int] = field(default_factory=dict)


@dataclass
class _Promises:
    """What was promised (a 202 or an id): request id -> (order, etid)."""

    expected: dict[str, tuple[str, str]] = field(default_factory=dict)
    answers: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: Any = field(default_factory=lambda: itertools.count(1))

    def etid(self) -> str:
        with self.lock:
            return f"E{next(self.numbers):06d}"

    def promise(self, request_id: str, order: str, etid: str) -> None:
        with self.lock:
            self.expected[request_id] = (order, etid)


def run_failover(
    ha: SentinelTopology,
    env: dict[str, str],
    control: SandboxControl,
    processes: StartedProcesses,
    load: FailoverLoad = FailoverLoad(),
    series: str = "2310",
) -> FailoverFigures:
    """Kill the primary under load (webhooks, batches, calls in flight) and measure."""
    window = float(env["RESEND_COOLDOWN_SECONDS"])
    orders = [f"RA251206-{series}-{n:02d}" for n in range(load.orders)]
    for order in orders:
        control.add_order(order)
        control.inject_fault(
            order, delay_seconds=load.slow_answer_seconds, delay_phase="after", count=1000
        )
    add_replica(ha)
    processes.worker(env, "w1", concurrency=8)
    web = processes.web(env)
    promises = _Promises()
    stop = threading.Event()
    cycle = itertools.cycle(orders)

    def webhooks() -> None:
        while not stop.is_set():
            _post_until_accepted(web.url, next(cycle), promises)
            stop.wait(load.webhook_every_seconds)

    def batches() -> None:
        while not stop.is_set():
            rows = [(next(cycle), promises.etid()) for _ in range(load.batch_rows)]
            _submit_until_accepted(rows, promises)
            stop.wait(load.batch_every_seconds)

    threads = [threading.Thread(target=f, daemon=True) for f in (webhooks, batches)]
    for thread in threads:
        thread.start()
    time.sleep(load.load_seconds_before)
    wait_for(
        lambda: any(c["status"] is None for c in resend_calls(control)),
        timeout=20,
        interval=0.02,
        what="calls in flight",
    )
    in_flight = sum(1 for c in resend_calls(control) if c["status"] is None)
    old = ha.kill_primary()
    ha.wait_for_promotion(old)
    ha.restart(old)  # rejoins as a replica: what REDIS_WAIT_REPLICAS=1 needs to go on
    time.sleep(load.load_seconds_after)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)

    request_ids = list(promises.expected)
    # Every promised request final, or gone (lost with the primary); one still waiting at
    # the deadline counts as lost too.
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: _all_settled(request_ids),
            timeout=load.settle_timeout_seconds,
            interval=0.5,
            what="every promised request final",
        )
    calls = resend_calls(control)
    after = [c["received_at"] for c in calls if c["received_at"] > ha.promoted_at]
    lost = [
        request_id
        for request_id in request_ids
        if (record := _read(request_id)) is None or record.status.value != "sent"
    ]
    sends: dict[str, int] = defaultdict(int)
    for call in accepted_sends(calls):
        sends[etid_of(call)] += 1
    promised_etids = {etid for _, etid in promises.expected.values()}
    inside = [
        p for order in orders for p in windows_respected(resend_calls(control, order), window)
    ]
    statuses: dict[int, int] = defaultdict(int)
    for _, status in promises.answers:
        statuses[status] += 1
    return FailoverFigures(
        promised=len(request_ids),
        lost=lost,
        duplicates=sum(n - 1 for etid, n in sends.items() if etid in promised_etids and n > 1),
        inside_window=[p for p in inside if p.startswith("two resends")],
        resume_s=(min(after) - ha.promoted_at) if after else float("inf"),
        promoted_after_s=ha.promoted_at - ha.killed_at,
        longest_refusal_s=_longest_refusal(promises.answers),
        calls_in_flight_at_kill=in_flight,
        answers=dict(statuses),
    )


def add_replica(ha: SentinelTopology) -> RedisNode:
    """A second replica, as a set run with REDIS_WAIT_REPLICAS=1 should have: after the
    promotion of one replica, the other acknowledges writes (the sentinels point it at the new
    primary as part of the failover) while the dead node is still away."""
    primary = ha.primary()
    config = [line for line in primary.config if not line.startswith("replicaof")]
    node = RedisNode(ha.workdir, f"redis-{len(ha.nodes) + 1}", [*config,
                     f"replicaof 127.0.0.1 {primary.port}"], password=ha.password)  # fmt: skip
    node.start()
    ha.nodes.append(node)
    ha.wait_replicated()
    wait_for(lambda: _sentinels_know(ha, replicas=2), timeout=30, interval=0.1,
             what="the sentinels to know both replicas")  # fmt: skip
    return node


def _sentinels_know(ha: SentinelTopology, replicas: int) -> bool:
    for sentinel in ha.sentinels:
        with contextlib.closing(sentinel.client()) as client:
            try:
                known = client.execute_command("SENTINEL", "REPLICAS", ha.master_name)
            except redis.RedisError:
                return False
        if len(known) < replicas:
            return False
    return True


def _post_until_accepted(url: str, order: str, promises: _Promises, deadline: float = 60.0) -> None:
    """A sender's webhook: retried on a 503 (or no answer) under the same webhook-id."""
    etid = promises.etid()
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        try:
            answer = post_webhook(url, FAILOVER_WEBHOOK_SECRET, {"referenceOrderID": order,
                                  "newEtid": etid}, f"msg_{etid}")  # fmt: skip
            status = answer.status_code
        except requests.RequestException:
            status = 0
        with promises.lock:
            promises.answers.append((time.time(), status))
        assert status in (0, 202, 503), status
        if status == 202:
            promises.promise(answer.json()["id"], order, etid)
            return
        time.sleep(0.1)
    raise AssertionError(f"webhook {etid} never accepted")


def _submit_until_accepted(
    rows: list[tuple[str, str]], promises: _Promises, deadline: float = 60.0
) -> None:
    """A batch, as `enqueue --file` sends it; the rows refused are sent again with their
    idempotency keys (a refused row may be stored: its key finds it)."""
    pending = rows
    give_up = time.monotonic() + deadline
    while pending:
        assert time.monotonic() < give_up, "a batch was never accepted"
        results = submit_many(
            [
                ({"referenceOrderID": order, "newEtid": etid}, f"bulk-{etid}")
                for order, etid in pending
            ]
        )
        refused = []
        for (order, etid), result in zip(pending, results, strict=True):
            if isinstance(result, Submission):
                promises.promise(result.request_id, order, etid)
            else:
                assert isinstance(result, RedisUnavailable), result
                refused.append((order, etid))
        pending = refused
        if pending:
            time.sleep(0.2)


def _read(request_id: str) -> Any:
    try:
        return get_resend(request_id)
    except RedisUnavailable:
        return None


def _all_settled(request_ids: list[str]) -> bool:
    try:
        records = [get_resend(request_id) for request_id in request_ids]
    except RedisUnavailable:
        return False
    return all(record is None or record.status.is_final for record in records)


def _longest_refusal(answers: list[tuple[float, int]]) -> float:
    longest, refused_since = 0.0, None
    for at, status in sorted(answers):
        if status == 202:
            if refused_since is not None:
                longest = max(longest, at - refused_since)
            refused_since = None
        elif refused_since is None:
            refused_since = at
    return longest
