"""A call whose outcome is unknown owes a probe: what the record keeps of it, and what a
probe's answer reads as.

A read timeout, a reset after sending, a 502/504 or a worker's death mid-call leaves Tango's
action unknown. The record keeps the earliest such call's start (`unresolved_call_started_at`)
until an outcome settles it; the next call is then a probe, judged from that start.
"""

from __future__ import annotations

import logging
from datetime import datetime

from worker.resend.decision import ResendOutcome, ResendPolicy, Sent
from worker.resend.refusal import REFUSAL_MARGIN_SECONDS, refusal_window_seconds
from worker.runtime import Runtime
from worker.state.call_marker import MarkerCheck
from worker.state.metrics import ProbeResult
from worker.state.records import AttemptEntry, AttemptOutcome, ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.errors import TangoCooldownError, TangoError

logger = logging.getLogger("tango_resend.executor")


def probe_owed(record: ResendRecord) -> bool:
    """Whether the next call is a probe: an earlier call's outcome is unknown."""
    return record.unresolved_call_started_at is not None


def seconds_since_unresolved_call(record: ResendRecord, sent_at: float) -> float | None:
    """How long after the earliest unknown call's start the probe left (Redis's clock)."""
    if record.unresolved_call_started_at is None:
        return None
    return sent_at - record.unresolved_call_started_at


def refusal_marker_check(
    runtime: Runtime,
    policy: ResendPolicy,
    result: TangoAnswer | TangoError,
    probe: bool,
    gate_ms: int,
) -> MarkerCheck | None:
    """What to ask the order's call marker along with a probe's answer: the refusal proof's
    conditions 2 and 4, for a probe Tango refused on a RESEND_EXCLUSIVE deployment whose
    stated window passes condition 1 (worker/resend/refusal.py). None: nothing to ask."""
    if not (probe and policy.exclusive and isinstance(result, TangoCooldownError)):
        return None
    tango_window = refusal_window_seconds(result, policy.window_seconds)
    if tango_window is None:
        return None
    settings = runtime.settings
    return MarkerCheck(
        probe_gate_ms=gate_ms,
        tango_window_seconds=tango_window,
        margin_seconds=REFUSAL_MARGIN_SECONDS,
        late_seconds=runtime.tango.longest_call_seconds + settings.resend_stall_bound_seconds,
    )


def note_late_probe(record: ResendRecord, answer_since: float | None, window: float) -> None:
    """A probe answered a window or more after the unknown call's gate: had that call acted,
    Tango's window was over and the probe was a second resend. Said loudly: the gate gives
    probes a slot ahead of every reservation, so only a 429 pause or a stall gets here."""
    if answer_since is not None and answer_since >= window:
        logger.warning(
            "request=%s order=%s probe answered %.3fs after the unknown call's gate, past the "
            "%.3fs window",
            record.id,
            record.reference_order_id,
            answer_since,
            window,
        )


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
