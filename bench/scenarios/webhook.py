"""Scenario 10: the webhook receiver's throughput in a storm, against a minimal peer.

Three receivers run side by side on this Redis: `tango-resend web` (one process, the default
settings, logging at INFO), `tango-resend web --workers 2`, and the minimal peer
(`bench/webhooks/peer.py`: FastAPI, verify the Standard Webhooks signature, parse the JSON,
publish one Celery task; no validation, idempotency, record, metrics or logging). Each gets
the same storm, in turns, `rounds` times: `webhooks` signed webhooks for distinct orders
(none a redelivery, none coalesced), from `senders` keep-alive connections
(`bench/webhooks/load.py`, a separate process sending prepared bytes). No worker runs, so the
receivers compete with nothing but the load and Redis.

Figures (medians over the rounds): `webhook_rps_ratio` = ours / peer requests per second;
`webhook_p99_ratio` = our p99 latency / the peer's; `webhook_scale_2proc` = two processes /
one. `details` has every round, and the CPU seconds each process (and the load, and Redis)
used per webhook, which say what bounds the two-process figure on a small machine.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.config import WebhookParams
from bench.harness import Stack, new_tag, tree_cpu_seconds
from bench.scenarios.common import Context, ScenarioResult, prefix
from tests.support.processes import REPO_ROOT, WebProcess, child_env
from worker.cli.entry import new_webhook_secret

RECEIVERS = ("peer", "ours", "ours_2proc")


class Receiver(WebProcess):
    """One receiver process tree on a free loopback port, its output in a log file."""

    what = "the receiver"

    def __init__(self, arguments: list[str], settings: dict[str, str], log_path: Path) -> None:
        super().__init__(settings, log_path, command=arguments)
        self.webhook_url = f"{self.url}/webhooks/resends"
        self.ps = psutil.Process(self.process.pid)

    def wait_until_up(self, health_path: str) -> Receiver:
        """Up once `health_path` answers anything but a server error."""
        self.wait_ready(60.0, path=health_path, statuses=range(500))
        return self

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.ps)


def _storm(url: str, secret: str, params: WebhookParams, warmup: int) -> dict[str, Any]:
    """One storm from a separate load process; its answer plus the load's own CPU."""
    load = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.webhooks.load",
            "--url",
            url,
            "--secret",
            secret,
            "--count",
            str(params.webhooks),
            "--senders",
            str(params.senders),
            "--warmup",
            str(warmup),
        ],
        env=child_env({}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(load.stdout.strip().splitlines()[-1])
    if result["statuses"] != {"202": params.webhooks}:
        raise RuntimeError(f"not every webhook was accepted: {result['statuses']}")
    return result


def _start(ctx: Context, secret: str, tag: str) -> dict[str, Receiver]:
    ours = {
        "REDIS_URL": ctx.probe.url,
        "REDIS_KEY_PREFIX": prefix(f"webhook-{tag}"),
        "RESEND_QUEUE": f"bench-webhook-{tag}",
        "WEBHOOK_SECRET": secret,
    }
    peer = {
        "PEER_REDIS_URL": ctx.probe.url,
        "PEER_QUEUE": f"bench-webhook-peer-{tag}",
        "PEER_WEBHOOK_SECRET": secret,
    }
    peer_command = [
        "-m",
        "uvicorn",
        "--factory",
        "bench.webhooks.peer:create_app",
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
        "--no-server-header",
    ]
    return {
        "peer": Receiver(peer_command, peer, ctx.log_dir / "webhook-peer.log").wait_until_up(
            "/docs"
        ),
        "ours": Receiver(
            ["-m", "worker", "web"], ours, ctx.log_dir / "webhook-ours.log"
        ).wait_until_up("/healthz"),
        "ours_2proc": Receiver(
            ["-m", "worker", "web", "--workers", "2"],
            ours,
            ctx.log_dir / "webhook-ours-2proc.log",
        ).wait_until_up("/healthz"),
    }


def run(ctx: Context, params: WebhookParams) -> ScenarioResult:
    secret = new_webhook_secret()
    tag = new_tag()
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in RECEIVERS}
    redis_process = psutil.Process(int(ctx.probe.client.info("server")["process_id"]))
    with Stack() as stack:
        receivers = _start(ctx, secret, tag)
        for receiver in receivers.values():
            stack.push(receiver, receiver.stop)
        for number in range(params.rounds):
            for name in RECEIVERS:
                receiver = receivers[name]
                cpu_before, redis_before = receiver.cpu_seconds(), _cpu(redis_process)
                load_before = _children_cpu()
                started = time.monotonic()
                result = _storm(receiver.webhook_url, secret, params, warmup=params.warmup)
                wall = time.monotonic() - started
                used = {
                    "receiver": receiver.cpu_seconds() - cpu_before,
                    "redis": _cpu(redis_process) - redis_before,
                    "load": _children_cpu() - load_before,
                }
                per_webhook = 1000 / (params.webhooks + params.warmup)
                for part, seconds in used.items():
                    result[f"{part}_cpu_ms_per_webhook"] = round(seconds * per_webhook, 3)
                # How busy the whole machine was: near 1, the receivers could not get more.
                result["machine_cpu_busy"] = round(
                    sum(used.values()) / (wall * (psutil.cpu_count() or 1)), 3
                )
                rounds[name].append(result)
                ctx.say(
                    f"  round {number + 1} {name}: {result['requests_per_s']:.0f}/s, "
                    f"p99 {result['p99_ms']:.1f} ms"
                )
    medians = {
        name: {
            "requests_per_s": statistics.median(r["requests_per_s"] for r in rows),
            "p50_ms": statistics.median(r["p50_ms"] for r in rows),
            "p99_ms": statistics.median(r["p99_ms"] for r in rows),
            "receiver_cpu_ms_per_webhook": statistics.median(
                r["receiver_cpu_ms_per_webhook"] for r in rows
            ),
            "redis_cpu_ms_per_webhook": statistics.median(
                r["redis_cpu_ms_per_webhook"] for r in rows
            ),
            "load_cpu_ms_per_webhook": statistics.median(
                r["load_cpu_ms_per_webhook"] for r in rows
            ),
            "machine_cpu_busy": statistics.median(r["machine_cpu_busy"] for r in rows),
        }
        for name, rows in rounds.items()
    }
    ours, peer, two = medians["ours"], medians["peer"], medians["ours_2proc"]
    return ScenarioResult(
        metrics={
            "webhook_rps_ratio": round(ours["requests_per_s"] / peer["requests_per_s"], 3),
            "webhook_p99_ratio": round(ours["p99_ms"] / peer["p99_ms"], 3),
            "webhook_scale_2proc": round(two["requests_per_s"] / ours["requests_per_s"], 3),
        },
        details={
            "medians": medians,
            "rounds": rounds,
            "cores": psutil.cpu_count(),
            "note": "each storm's load runs in its own process on the same machine; on two "
            "cores two receiver processes share them with the load and Redis",
        },
        series={"medians": medians},
    )


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the load processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)
