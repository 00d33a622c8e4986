"""A call whose outcome is unknown owes a probe: what the record keeps of it, and what a
probe's answer reads as.

A read timeout, a reset after sending, a 502/504 or a worker's death mid-call leaves Tango's
action unknown. The record keeps the earliest such call's start (`unresolved_call_started_at`)
until an outcome settles it; the next call is then a probe, judged from that start.
"""

from __future__ import annotations

import logging
from datetime import datetime

from worker.resend.decision import ResendOutcome, Sent
from worker.state.metrics import ProbeResult
from worker.state.records import AttemptEntry, AttemptOutcome, ResendRecord

logger = logging.getLogger("tango_resend.executor")


def probe_owed(record: ResendRecord) -> bool:
    """Whether the next call is a probe: an earlier call's outcome is unknown."""
    return record.unresolved_call_started_at is not None


def seconds_since_unresolved_call(record: ResendRecord, sent_at: float) -> float | None:
    """How long after the earliest unknown call's start the probe left (Redis's clock)."""
    if record.unresolved_call_started_at is None:
        return None
    return sent_at - record.unresolved_call_started_at


def note_unresolved_call(record: ResendRecord, started_at: float) -> None:
    """A call whose outcome is unknown: probes are judged from the earliest such call."""
    earliest = record.unresolved_call_started_at
    record.unresolved_call_started_at = (
        started_at if earliest is None else min(earliest, started_at)
    )


def note_interrupted_call(record: ResendRecord, started_at: float, now: datetime) -> None:
    """A call of this request passed the gate and nobody stored its outcome (its worker died
    mid-call): whether Tango acted is unknown, so the next call is a probe."""
    note_unresolved_call(record, started_at)
    record.attempt_log.append(AttemptEntry(at=now, outcome=AttemptOutcome.INTERRUPTED))
    logger.warning(
        "request=%s order=%s a call was cut off (its worker died?); probing Tango",
        record.id,
        record.reference_order_id,
    )


def probe_result(outcome: ResendOutcome) -> ProbeResult:
    """The `result` label of `tango_resend_probes_total` for a probe's outcome."""
    if isinstance(outcome, Sent):
        return ProbeResult.SENT if outcome.confirmed_by is None else ProbeResult.CONFIRMED
    return ProbeResult.INCONCLUSIVE
