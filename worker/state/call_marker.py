"""The order's call marker: every call of ours to an order, and how late it could have acted.

The refusal proof (RESEND_EXCLUSIVE) reads a probe's refusal by Tango as proof that our
ambiguous call acted only if no other call of ours to the order could have caused it: every
other call must have been able to act no later than Tango's window (plus a margin) before the
probe. The gate writes each call into the marker in the same Lua step that lets it through
(`lua/lib/pass_gate.lua`), able to act until its start + the longest call + the stall bound;
its answer lowers that to the answer's moment, or drops a call that provably never reached
Tango (`lua/call_answered.lua`). Nothing else touches it: no cancel, failure or error answer
releases a call. Each marker keeps the `run_id` of the Redis that wrote it, and the fleet's
epoch says since when this Redis holds every marker, so a restart or failover that may have
lost writes defeats the proof instead of hiding a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis

from worker.state import scripts
from worker.state.keys import RedisKeys


class CallAnswer(StrEnum):
    """What a call's answer says about when it could act (call_answered.lua's words)."""

    ANSWERED = "answered"  # Tango (or a gateway that waited for it) answered: nothing later
    EXEMPT = "exempt"  # provably never reached Tango (connect failure, 401, 429)
    UNKNOWN = "unknown"  # may still act: a timeout, a reset, a 502/504


class MarkerVerdict(StrEnum):
    """The marker's part of the refusal proof (call_answered.lua's words)."""

    NOT_ASKED = ""
    CLEAR = "clear"  # no other call of ours can explain the refusal
    OTHER_CALL = "other_call"  # another call of ours could have acted inside Tango's window
    RESTARTED = "restarted"  # the Redis holding the marker may have lost a call


@dataclass(frozen=True)
class MarkerCheck:
    """Ask for the proof's marker conditions along with the probe's answer.

    Attributes:
        probe_gate_ms: the probe's gate time (Redis ms): Tango judged it later still.
        tango_window_seconds: the window Tango's refusal states.
        margin_seconds: added to Tango's window (at least 2 s).
        late_seconds: the longest call plus the stall bound: how long after a Redis took
            over a call whose marker it never got could still act.
    """

    probe_gate_ms: int
    tango_window_seconds: float
    margin_seconds: float
    late_seconds: float


@dataclass(frozen=True)
class MarkerResult:
    verdict: MarkerVerdict
    detail: str


def call_id(request_id: str, gate_ms: int) -> str:
    """A call's name in the marker: its request and its gate time (Redis ms)."""
    return f"{request_id}@{gate_ms}"


class CallMarker:
    """Writes calls' answers into their order's marker and judges the refusal proof's part."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, keep_seconds: float) -> None:
        self._keys = keys
        self._answered = scripts.load("call_answered").bind(client)
        self._keep_ms = int(keep_seconds * 1000)

    def open_epoch(self) -> None:
        """Start this Redis's epoch if it has none (a worker does at start, so that the fleet's
        first probes after a deploy do not find it only as old as their own calls)."""
        self.answered("-", "", None, CallAnswer.UNKNOWN)

    def answered(
        self,
        reference_order_id: str,
        request_id: str,
        gate_ms: int | None,
        answer: CallAnswer,
        check: MarkerCheck | None = None,
    ) -> MarkerResult:
        """Record a call's answer (`gate_ms` None: no call to record) and, with `check`,
        judge first whether any other call of ours to the order could explain a refusal."""
        verdict, detail = self._answered(
            keys={
                "marker_key": self._keys.call_marker(reference_order_id),
                "epoch_key": self._keys.call_marker_epoch,
            },
            args={
                "request_id": request_id,
                "call_id": "" if gate_ms is None else call_id(request_id, gate_ms),
                "outcome": answer.value,
                "keep_ms": self._keep_ms,
                "check": "1" if check else "",
                "probe_gate_ms": check.probe_gate_ms if check else 0,
                "tango_window_ms": _ms(check.tango_window_seconds) if check else 0,
                "margin_ms": _ms(check.margin_seconds) if check else 0,
                "late_ms": _ms(check.late_seconds) if check else 0,
            },
        )
        return MarkerResult(MarkerVerdict(_text(verdict)), _text(detail))


def _ms(seconds: float) -> int:
    return int(seconds * 1000 + 0.999)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
