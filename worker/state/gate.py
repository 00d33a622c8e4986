"""The gate every call to Tango passes: the order's turn, its window, the fleet's rate limit.

One Lua script decides all three at once, on Redis's clock, so that of any number of workers
exactly one may call for an order, calls follow the order in which requests were enqueued, and
the fleet never exceeds the rate limit. Rate-limit slots are reserved, not retried for: a
request over the limit is given the next free slot (GCRA: the limiter's theoretical arrival
time moves one interval per call) and waits exactly until it, so waiting costs no calls and
slots go first come, first served.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from worker.state import scripts
from worker.state.durability import NotReplicated, ReplicaWait
from worker.state.keys import RedisKeys
from worker.state.records import (
    SCRIPT_REPLY_MEMO_SECONDS,
    BeginVerdict,
    Begun,
    begin_arguments,
    begun_from_reply,
)
from worker.state.scripts import ScriptValue
from worker.state.window import window_milliseconds

# Tango measures its own rate at arrival, we at the gate. Slots (and the sliding window) are
# this much wider than the limit, so that what happens between our gate and Tango's arrival
# (a busy worker's thread switches, the network) never lets Tango count one call too many:
# 8% of a second is 80 ms of such jitter. 3% (30 ms) was not enough on a loaded 2-core host
# (an occasional 429 in tests and the bench); this costs 5% of the limit's throughput.
RATE_HEADROOM = 1.08
# How long the order's call marker keeps a call past the last moment it could act, at least:
# the refusal proof asks only about calls that could act within a window before a probe.
MARKER_KEEP_SECONDS = 3600.0


class Verdict(StrEnum):
    """What the gate's script answered (its first reply element; the values are its words)."""

    GO = "go"  # the caller holds the window and a rate slot and must call now
    TURN = "turn"  # an earlier request of the order goes first (it will promote this one)
    WINDOW = "window"  # the order's window is held: wait `wait_seconds`
    RATE = "rate"  # the fleet's next rate-limit slot is `wait_seconds` away (reserved for it)
    FINAL = "final"  # the request is final: nothing to do
    UNKNOWN = "unknown"  # no such record: nothing to do
    STALE = "stale"  # a newer run holds the request: this one must change nothing


@dataclass(frozen=True)
class GateVerdict:
    """The gate's answer (see `Verdict`), and for `window` / `rate` how long to wait."""

    verdict: Verdict
    wait_seconds: float
    # `go` only: when the call starts, Redis's clock in epoch seconds (None otherwise).
    started_at: float | None = None


def _verdict_from_reply(verdict: Any, wait_ms: Any, started: Any = "") -> GateVerdict:
    kind = Verdict(str(verdict))
    started_at = int(started) / 1000 if kind is Verdict.GO and str(started) else None
    return GateVerdict(kind, int(wait_ms) / 1000, started_at)


class CallGate:
    """Admits calls to Tango: one per order per window, in order, within the rate limit."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        rate_limit: float,
        *,
        wait: ReplicaWait | None = None,
        stall_seconds: float = 0.0,
        marker_keep_seconds: float = MARKER_KEEP_SECONDS,
    ) -> None:
        """`stall_seconds`: how long past its bound a call whose outcome is unknown may still
        act (RESEND_STALL_BOUND_SECONDS), for the order's call marker, which keeps each call
        `marker_keep_seconds` past the moment it could act last."""
        self._keys = keys
        self._stall_ms = int(stall_seconds * 1000 + 0.999)
        self._marker_keep_ms = int(marker_keep_seconds * 1000)
        # REDIS_WAIT_REPLICAS: a `go` is on that many replicas before the call is made.
        self._wait = wait
        self._withdraw = scripts.load("gate_withdraw").bind(client)
        self._start = scripts.load("gate_start").bind(client)
        self._begin_and_start = scripts.load("start").bind(client)
        self._pause = scripts.load("gate_pause").bind(client)
        self._reserve = scripts.load("gate_reserve").bind(client)
        self._interval_ms = int(1000 * RATE_HEADROOM / rate_limit + 0.999) if rate_limit else 0
        # The window Tango is taken to count arrivals in: a second, or one call's share of
        # time when the limit is under 1/s. We count our call starts over a window as much
        # longer as the slots are wider, so arrival jitter cannot crowd Tango's window.
        span = max(1.0, 1.0 / rate_limit) if rate_limit else 0.0
        self._span_ms = int(1000 * span * RATE_HEADROOM + 0.999)
        self._allowed_per_span = max(1, round(rate_limit * span))

    @property
    def rate_interval_seconds(self) -> float:
        return self._interval_ms / 1000

    def try_start(
        self,
        reference_order_id: str,
        request_id: str,
        hold_seconds: float,
        token: str = "",
        *,
        call_seconds: float | None = None,
        probe: bool = False,
    ) -> GateVerdict:
        """Ask to call Tango for this request now; on `go` the window is held for
        `hold_seconds` (re-anchor or release it after the call) and the call counts as in
        flight for `call_seconds` (default: the hold). With a run's fencing `token`, a run
        that a newer one has replaced gets `stale` and must stop. A `probe` may pass the
        window its own request holds, and goes ahead of every rate-limit reservation (it still
        takes a slot: the others move back one). On `go` the order's call marker gets the
        call (lib/call_marker.lua)."""
        bound = hold_seconds if call_seconds is None else call_seconds
        keys = {
            **self._gate_keys(reference_order_id, request_id),
            "record_key": self._keys.record(request_id),
            "due_key": self._keys.due_index,
        }
        args: dict[str, ScriptValue] = {
            **self._gate_args(request_id, hold_seconds, bound),
            "run_token": token,
            "probe": "1" if probe else "",
        }
        if self._wait is None:
            return _verdict_from_reply(*self._start(keys=keys, args=args))
        reply, acknowledged = self._start.call_then(keys, args, *self._wait.command)
        verdict = _verdict_from_reply(*reply)
        self._require_replicated(
            verdict, acknowledged, reference_order_id, request_id, token, probe
        )
        return verdict

    def _require_replicated(
        self,
        verdict: GateVerdict,
        acknowledged: Any,
        reference_order_id: str,
        request_id: str,
        token: str,
        probe: bool,
    ) -> None:
        """A `go` not on REDIS_WAIT_REPLICAS replicas is no go: a failover could take it back,
        and the next run would then call blind (Tango's cooldown after our own call reads as
        someone else's resend: two resends). It is taken back and `NotReplicated` raised; the
        run is tried again later. (Were the take-back lost and the go kept by a failover,
        the next run probes: never a blind call.)"""
        if self._wait is None or verdict.verdict is not Verdict.GO:
            return
        if self._wait.confirmed(acknowledged):
            return
        self._withdraw(
            keys={
                "window_key": self._keys.order_window(reference_order_id),
                "record_key": self._keys.record(request_id),
            },
            args={
                "id": request_id,
                "run_token": token,
                "started": "" if verdict.started_at is None else round(verdict.started_at * 1000),
                "probe": "1" if probe else "",
            },
        )
        raise NotReplicated(f"request {request_id}'s call to Tango", int(acknowledged), self._wait)

    def _gate_keys(self, reference_order_id: str, request_id: str) -> dict[str, str]:
        """The keys the gate reads besides the record and the due index (which begin shares)."""
        keys = self._keys
        return {
            "window_key": keys.order_window(reference_order_id),
            "order_key": keys.order_fifo(reference_order_id),
            "limiter_key": keys.rate_limiter,
            "reservations_key": keys.rate_reservations,
            "recent_calls_key": keys.rate_recent_calls,
            "pause_key": keys.rate_pause,
            "marker_key": keys.call_marker(reference_order_id),
            "epoch_key": keys.call_marker_epoch,
        }

    def _gate_args(
        self, request_id: str, hold_seconds: float, call_seconds: float
    ) -> dict[str, ScriptValue]:
        return {
            "id": request_id,
            "hold_ms": window_milliseconds(hold_seconds),
            "interval_ms": self._interval_ms,
            "span_ms": self._span_ms,
            "allowed_per_span": self._allowed_per_span,
            "call_bound_ms": max(1, int(call_seconds * 1000)),
            "stall_ms": self._stall_ms,
            "marker_keep_ms": self._marker_keep_ms,
        }

    def begin_and_try_start(
        self,
        reference_order_id: str,
        request_id: str,
        lease_seconds: float,
        dispatch: int | None,
        hold_seconds: float,
        *,
        call_seconds: float,
        due_tolerance_seconds: float,
    ) -> tuple[Begun, GateVerdict | None]:
        """`RecordStore.begin` and, in the same round trip, `try_start` with the new run's
        token, when the run needs no look first (start.lua): no interrupted call, no probe
        owed, not woken more than `due_tolerance_seconds` before its next attempt. The
        verdict is None when the gate was not passed (then pass it with `try_start`)."""
        begin_keys, begin_args = begin_arguments(self._keys, request_id, lease_seconds, dispatch)
        keys = {
            **begin_keys,
            **self._gate_keys(reference_order_id, request_id),
            "memo_key": self._keys.script_reply(uuid.uuid4().hex),
        }
        args: dict[str, ScriptValue] = {
            **begin_args,
            **self._gate_args(request_id, hold_seconds, call_seconds),
            "due_tolerance": due_tolerance_seconds,
            "memo_ttl": SCRIPT_REPLY_MEMO_SECONDS,
        }
        acknowledged: Any = None
        if self._wait is None:
            reply = self._begin_and_start(keys=keys, args=args)
        else:
            reply, acknowledged = self._begin_and_start.call_then(keys, args, *self._wait.command)
        begun = begun_from_reply(request_id, reply)
        if begun.verdict is not BeginVerdict.OK or not str(reply[7]):
            return begun, None
        verdict = _verdict_from_reply(*reply[7:10])
        self._require_replicated(
            verdict, acknowledged, reference_order_id, request_id, begun.token, False
        )
        return begun, verdict

    def reserve_slot(self, label: str = "call") -> float:
        """Take the fleet's next rate-limit slot for a call outside a resend (an order
        listing), entered in the same sliding window as resends; returns the seconds to wait
        for it (0 when the limit is off)."""
        if not self._interval_ms:
            return 0.0
        waited = self._reserve(
            keys={
                "limiter_key": self._keys.rate_limiter,
                "recent_calls_key": self._keys.rate_recent_calls,
            },
            args={
                "interval_ms": self._interval_ms,
                "span_ms": self._span_ms,
                "label": f"{label}:{uuid.uuid4().hex[:8]}",
            },
        )
        return int(waited) / 1000

    def pause(self, seconds: float) -> None:
        """Hold back every worker's next call by `seconds` (Tango answered 429)."""
        if self._interval_ms:
            self._pause(
                keys={"limiter_key": self._keys.rate_limiter, "pause_key": self._keys.rate_pause},
                args={"pause_ms": max(1, int(seconds * 1000))},
            )
