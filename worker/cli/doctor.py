"""`tango-resend doctor`: what an operator checks on a new deployment, in one run.

Each check is a plain function of the runtime that returns `Check`s; none changes state except
that the Tango check takes one slot of the fleet's rate limit (it is a real call) and, with
OAuth, may fetch the fleet's shared token as any worker would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from pydantic import AnyUrl, SecretStr

from worker.core.errors import RedisUnavailable
from worker.core.redaction import url_without_secrets
from worker.core.settings import Settings
from worker.core.times import rfc3339
from worker.runtime import Runtime
from worker.state.connection import describe_connection
from worker.state.redis_durability import Durability, describe, read_durability
from worker.state.redis_health import eviction_policy, evicts
from worker.tango.auth import TokenUnavailable
from worker.tango.errors import TangoAuthenticationError, TangoError

# Offsets up to this are ordinary NTP-synchronised drift; beyond, a host's clock is wrong.
CLOCK_TOLERANCE_SECONDS = 2.0
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's priority queues


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class RedisUnreachable(RedisUnavailable):
    """Raised when Redis does not answer at all: nothing else can be checked."""


def run_checks(runtime: Runtime, *, inspect_timeout: float = 1.0) -> list[Check]:
    """Every check, in the order an operator reads them.

    Raises:
        RedisUnreachable: Redis does not answer (the CLI exits 3).
    """
    checks = check_redis(runtime)
    checks.append(check_queue(runtime, inspect_timeout))
    tango, tango_time = check_tango(runtime)
    checks.append(tango)
    checks.append(check_clocks(runtime, tango_time))
    checks.append(Check("settings", True, describe_settings(runtime.settings)))
    return checks


def check_redis(runtime: Runtime) -> list[Check]:
    client = runtime.redis
    try:
        started = time.perf_counter()
        client.ping()
        round_trip_ms = (time.perf_counter() - started) * 1000
        server = client.info("server")
        durability = read_durability(client)
        policy = eviction_policy(client)
        where = describe_connection(runtime.settings, client)
    except redis.RedisError as error:
        raise RedisUnreachable(str(error)) from error
    checks = [
        Check(
            "redis",
            True,
            f"Redis {server.get('redis_version', '?')} answers, one round trip "
            f"{round_trip_ms:.1f} ms; {where}",
        )
    ]
    if evicts(policy):
        checks.append(
            Check(
                "redis eviction",
                False,
                f"maxmemory-policy is {policy}: under memory pressure Redis drops records, "
                "windows and queued tasks; set maxmemory-policy noeviction",
            )
        )
    else:
        checks.append(Check("redis eviction", True, f"maxmemory-policy {policy or 'not reported'}"))
    checks.append(check_durability(durability))
    return checks


def check_durability(durability: Durability) -> Check:
    """What a restart, a host crash or a failover of this Redis can lose (a warning, not a
    failure: a development Redis without AOF is fine for development)."""
    detail = describe(durability)
    return Check("redis persistence", True, ("warning: " if durability.weak else "") + detail)


def check_queue(runtime: Runtime, inspect_timeout: float) -> Check:
    queue = runtime.settings.resend_queue
    with runtime.redis.pipeline(transaction=False) as pipe:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
        depth = sum(int(n) for n in pipe.execute())
    consumers = _consumers(queue, inspect_timeout)
    if consumers is None:
        return Check(
            "queue",
            False,
            f"queue {queue!r}: {depth} message(s) waiting; the workers could not be asked",
        )
    if not consumers:
        return Check(
            "queue",
            False,
            f"queue {queue!r}: {depth} message(s) waiting, and no worker consumes it "
            "(start one: tango-resend worker)",
        )
    return Check(
        "queue",
        True,
        f"queue {queue!r}: {depth} message(s) waiting; consumed by {', '.join(sorted(consumers))}",
    )


def _consumers(queue: str, timeout: float) -> list[str] | None:
    """Node names of the workers consuming `queue` (Celery's remote control), None on error."""
    from worker.queueing.app import app

    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # the broker itself failed; Redis was checked just before
        return None
    return [
        node
        for node, queues in replies.items()
        if any(item.get("name") == queue for item in queues or [])
    ]


def check_tango(runtime: Runtime) -> tuple[Check, datetime | None]:
    """One authenticated read that resends nothing: a one-order page of the order list for
    the last minute. It takes a rate-limit slot like any other call."""
    settings = runtime.settings
    where = url_without_secrets(str(settings.tango_base_url))
    if not settings.has_tango_credentials:
        return Check("tango", False, f"{where}: no credentials are set"), None
    scheme = "OAuth" if settings.uses_oauth else "HTTP Basic"
    end = datetime.now(UTC)
    params: dict[str, str | int] = {
        "startDate": rfc3339(end - timedelta(minutes=1)),
        "endDate": rfc3339(end),
        "elementsPerBlock": 1,
        "page": 0,
    }
    try:
        time.sleep(runtime.gate.reserve_slot("doctor"))
        answer = runtime.tango.list_orders(params)
    except TangoAuthenticationError as error:
        return Check("tango", False, f"{where}: credentials refused ({scheme}): {error}"), None
    except TokenUnavailable as error:
        return Check("tango", False, f"{where}: no OAuth token ({scheme}): {error}"), None
    except TangoError as error:
        return Check("tango", False, f"{where}: {error}"), None
    tango_time = answer.tango_time.at if answer.tango_time else None
    return (
        Check(
            "tango",
            True,
            f"{where} answers and accepts the {scheme} credentials "
            f"({answer.elapsed_seconds * 1000:.0f} ms)",
        ),
        tango_time,
    )


def check_clocks(
    runtime: Runtime, tango_time: datetime | None, now: Callable[[], float] = time.time
) -> Check:
    """This host's clock against Redis's TIME (and Tango's Date, when it answered)."""
    before = now()
    seconds, micros = runtime.redis.time()
    after = now()
    redis_offset = int(seconds) + int(micros) / 1e6 - (before + after) / 2
    parts = [f"Redis {redis_offset:+.3f} s"]
    worst = abs(redis_offset)
    if tango_time is not None:
        # Date has one-second resolution: an offset under a second is noise.
        tango_offset = tango_time.timestamp() - now()
        parts.append(f"Tango {tango_offset:+.1f} s (Date header, 1 s resolution)")
        worst = max(worst, abs(tango_offset) - 1.0)
    detail = "offset of this host's clock: " + "; ".join(parts)
    if worst > CLOCK_TOLERANCE_SECONDS:
        return Check("clock", False, detail + f" (more than {CLOCK_TOLERANCE_SECONDS:g} s)")
    return Check("clock", True, detail)


def describe_settings(settings: Settings) -> str:
    """Every effective setting, secrets masked."""
    return "; ".join(f"{name}={value}" for name, value in masked_settings(settings).items())


def masked_settings(settings: Settings) -> dict[str, str]:
    shown: dict[str, str] = {}
    for field in type(settings).model_fields:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            text = "***"
        elif field == "redis_url":
            text = settings.redis_target.redacted()
        elif value is None:
            text = "-"
        elif isinstance(value, AnyUrl):
            text = url_without_secrets(str(value))
        else:
            text = str(value)
        shown[field.upper()] = text
    return shown
