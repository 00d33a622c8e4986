"""Bad days at Tango: calls that never reached it, and the fleet's outage mark.

A call that provably never reached Tango (unreachable, credentials refused, 503, 429) is not
a failure of the request: it waits and tries again with capped backoff, until its patience
(TANGO_OUTAGE_PATIENCE_SECONDS since its first try) runs out. When the reason is the whole
fleet's (unreachable, credentials refused), the fleet marks Tango down in Redis
(worker/state/outage.py): one call per interval tests Tango, and every other request waits
without calling. Logs say it once, then once a minute (worker/core/conditions.py).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

import redis

from worker.core.conditions import TANGO_CREDENTIALS_REFUSED, TANGO_UNREACHABLE
from worker.core.settings import Settings
from worker.resend.decision import (
    MIN_DEFER_MARGIN_SECONDS,
    Failed,
    History,
    Random,
    ResendPolicy,
    out_of_patience_reason,
    outage_backoff_seconds,
    patience_left_seconds,
)
from worker.runtime import Runtime
from worker.state.outage import Outage, OutageReason
from worker.state.records import ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.error_mapping import NeverReached, never_reached, shown_url
from worker.tango.errors import TangoError

logger = logging.getLogger("tango_resend.executor")


def credentials_advice(settings: Settings) -> str:
    """The settings to check when Tango refuses our credentials."""
    if settings.uses_oauth:
        return "check TANGO_CLIENT_ID and TANGO_CLIENT_SECRET"
    return "check TANGO_PLATFORM_NAME and TANGO_PLATFORM_KEY"


def note_first_try(record: ResendRecord, now: datetime) -> None:
    """Patience counts from the request's first try."""
    if record.first_tried_at is None:
        record.first_tried_at = now.timestamp()


def outage_in_force(runtime: Runtime) -> Outage | None:
    """The fleet's outage mark (read at most once a second per process), None when Redis
    cannot say: the run then goes on as usual and meets whatever Redis does."""
    try:
        outage = runtime.outage.current()
    except redis.RedisError:
        return None
    if outage is None:
        # Another worker's call got through and cleared the mark: this process's own
        # conditions end too (their last line), though it has made no call since.
        TANGO_UNREACHABLE.clear()
        TANGO_CREDENTIALS_REFUSED.clear()
    return outage


def take_test_call(runtime: Runtime, outage: Outage, policy: ResendPolicy, rand: Random) -> bool:
    """Whether this run is the one call of this interval that tests Tango."""
    return runtime.outage.take_test(test_interval_seconds(outage, policy, rand))


def test_interval_seconds(outage: Outage, policy: ResendPolicy, rand: Random) -> float:
    """Between two calls that test a Tango marked down: the outage backoff of its count."""
    return outage_backoff_seconds(outage.failures, policy, rand)


def observe(runtime: Runtime, result: TangoAnswer | TangoError) -> NeverReached | None:
    """What one call's result says of Tango for the whole fleet: an answer (any answer that
    is not a refusal of us) clears the outage mark and ends the conditions; a call that never
    reached Tango for a reason the fleet shares marks it down. Returns the never-reached kind.
    """
    kind = never_reached(result) if isinstance(result, TangoError) else None
    ambiguous = kind is None and isinstance(result, TangoError) and result.status is None
    try:
        if kind is None and not ambiguous:
            if runtime.outage.mark_up():
                logger.warning("Tango answers again: the fleet's outage mark is cleared")
            TANGO_UNREACHABLE.clear()
            TANGO_CREDENTIALS_REFUSED.clear()
        elif kind is not None and kind.outage is not None:
            assert isinstance(result, TangoError)
            _mark_down(runtime, kind.outage, result)
    except redis.RedisError:  # the mark is an efficiency device: the run goes on without it
        logger.debug("could not update the outage mark", exc_info=True)
    return kind


def _mark_down(runtime: Runtime, reason: OutageReason, error: TangoError) -> None:
    settings = runtime.settings
    url = error.url or shown_url(str(settings.tango_base_url))
    detail = f"{error} at {url}"
    keep = settings.tango_outage_patience_seconds
    runtime.outage.mark_down(reason, str(error), url, keep)
    if reason is OutageReason.CREDENTIALS_REFUSED:
        TANGO_CREDENTIALS_REFUSED.report(
            detail,
            f"{credentials_advice(settings)}; requests wait, they do not fail, until "
            "TANGO_OUTAGE_PATIENCE_SECONDS",
        )
    else:
        TANGO_UNREACHABLE.report(detail, "check TANGO_BASE_URL and the network to it")


def waiting_reason(runtime: Runtime, kind: NeverReached, error: TangoError) -> str:
    """The waiting state's words: the fleet's outage ("waiting: Tango unreachable since
    14:02 (…)"), or Tango's own 503/429 answer."""
    if kind.outage is not None:
        with contextlib.suppress(redis.RedisError):
            outage = runtime.outage.current()
            if outage is not None and outage.reason is kind.outage:
                return outage.waiting_reason()
        return f"waiting: {kind.outage.words} ({error})"
    return f"waiting: Tango is busy ({error})"


def note_waiting(runtime: Runtime, kind: NeverReached, request_id: str, until: float) -> None:
    """Count the request among those waiting on an outage (the metric), if it is one."""
    if kind.outage is None:
        return
    with contextlib.suppress(redis.RedisError):  # a gauge: never fails the run
        runtime.outage.note_waiting(kind.outage, request_id, until)


def note_not_waiting(runtime: Runtime, record: ResendRecord) -> None:
    """The request got through (or ended): it no longer waits on an outage."""
    if record.outage_failures == 0:
        return
    record.outage_failures = 0
    with contextlib.suppress(redis.RedisError):
        runtime.outage.note_not_waiting(record.id)


def outage_wait(
    outage: Outage, history: History, policy: ResendPolicy, rand: Random
) -> tuple[float, Failed | None]:
    """For a request that meets the fleet's outage mark without the test call: how long to
    wait (until about the next test), or its failure once patience has run out."""
    left = patience_left_seconds(history, policy)
    if left <= 0:
        reason = out_of_patience_reason(policy, outage.detail, outage.url)
        return 0.0, Failed(reason, None)
    # Wake just after the next test call could have cleared the mark; never past patience.
    delay = test_interval_seconds(outage, policy, rand) + MIN_DEFER_MARGIN_SECONDS
    return min(delay, left + MIN_DEFER_MARGIN_SECONDS), None
