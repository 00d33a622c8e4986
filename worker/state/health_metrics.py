"""The gauges that say whether Redis and Tango are up, alive when Redis is not.

Every process that serves metrics exports them from its own memory as a fallback, so a scrape
with Redis down still answers: `tango_resend_redis_up 0`, Tango's state as this process last
saw it, and the last known count of requests waiting on an outage. With Redis up they are
the fleet's (the outage mark, Tango's last success and the waiting requests, kept in Redis).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, Metric

from worker.core.conditions import TANGO_CREDENTIALS_REFUSED, TANGO_UNREACHABLE
from worker.state.outage import OutageReason, TangoOutage


class HealthGauges:
    """`tango_resend_redis_up`, `tango_resend_tango_up`,
    `tango_resend_tango_last_success_timestamp_seconds` and
    `tango_resend_waiting_on_outage{reason}`."""

    def __init__(self, outage: TangoOutage) -> None:
        self._outage = outage
        self._lock = threading.Lock()
        self._waiting: dict[OutageReason, int] = dict.fromkeys(OutageReason, 0)
        self._tango_up: bool | None = None
        self._down_for: OutageReason | None = None
        self._last_success: float | None = None

    def collect(self, redis_up: bool) -> Iterator[Metric]:
        if redis_up:
            self._refresh()
        with self._lock:
            waiting = dict(self._waiting)
            fleet_tango_up, last_success = self._tango_up, self._last_success
            down_for = self._down_for
        own_tango_up = not (TANGO_UNREACHABLE.active or TANGO_CREDENTIALS_REFUSED.active)
        tango_up = fleet_tango_up if redis_up and fleet_tango_up is not None else own_tango_up
        if not redis_up or fleet_tango_up is None:
            down_for = _own_outage_reason()
        if not redis_up:
            # The fleet's value (written at most every few seconds) while Redis answers, so
            # every endpoint serves the same; this process's own when Redis does not.
            own_success = self._outage.last_success
            if own_success is not None and (last_success is None or own_success > last_success):
                last_success = own_success
        yield GaugeMetricFamily(
            "tango_resend_redis_up",
            "1 when this process reached Redis for this scrape, else 0 (from its own memory).",
            value=1.0 if redis_up else 0.0,
        )
        yield GaugeMetricFamily(
            "tango_resend_tango_up",
            "0 while the fleet has Tango marked down (unreachable, or our credentials "
            "refused); with Redis down, as this process last saw Tango.",
            value=1.0 if tango_up else 0.0,
        )
        if last_success is not None:
            yield GaugeMetricFamily(
                "tango_resend_tango_last_success_timestamp_seconds",
                "When a call last got an answer from Tango that was not a refusal of us.",
                value=last_success,
            )
        outages = GaugeMetricFamily(
            "tango_resend_tango_outage",
            "1 for the reason Tango is marked down (unreachable, credentials_refused), else 0.",
            labels=["reason"],
        )
        for reason in OutageReason:
            outages.add_metric([reason.value], 1.0 if reason is down_for else 0.0)
        yield outages
        family = GaugeMetricFamily(
            "tango_resend_waiting_on_outage",
            "Requests waiting on a Tango outage, by reason (unreachable, "
            "credentials_refused); the last known count while Redis is down.",
            labels=["reason"],
        )
        for reason, count in waiting.items():
            family.add_metric([reason.value], float(count))
        yield family

    def _refresh(self) -> None:
        try:
            outage = self._outage.read()
            last_success = self._outage.last_success_at()
            waiting = self._outage.waiting_counts()
        except redis.RedisError:
            return  # the last known values stay
        with self._lock:
            self._tango_up = outage is None
            self._down_for = None if outage is None else outage.reason
            self._last_success = last_success
            self._waiting = waiting


def _own_outage_reason() -> OutageReason | None:
    """What this process last saw of Tango, for when Redis cannot say."""
    if TANGO_CREDENTIALS_REFUSED.active:
        return OutageReason.CREDENTIALS_REFUSED
    if TANGO_UNREACHABLE.active:
        return OutageReason.UNREACHABLE
    return None
