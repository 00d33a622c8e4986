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

import redis

from worker.state import record_scripts
from worker.state.keys import RedisKeys
from worker.state.window import window_milliseconds

# KEYS: window, order fifo, record, rate limiter, reservation, due index, recent calls, pause
# ARGV: request id, window hold (ms), rate interval (ms, 0 = no limit), sliding span (ms),
#       calls allowed per span, run token ('' = no check), call bound (ms), probe ('1' or ''),
#       final statuses...
# Returns {verdict, wait_ms, call start (Redis ms, `go` only)}; verdicts: go, turn, window,
# rate, final, unknown, stale.
# On `go` the record gets `calling_until` (start + call bound: the call is over by then) and
# `call_started_at` (kept if already there: the start of a call whose outcome nobody stored,
# which a probe must still account for). A probe (ARGV[8]) passes the window its own request
# holds: it is the prompt second call that asks Tango whether an ambiguous first one acted.
_START = (
    record_scripts.IS_FINAL
    + """
local id = ARGV[1]
local record = redis.call('HMGET', KEYS[3], 'status', 'run', 'calling_until')
local status = record[1]
if not status then return {'unknown', 0} end
if is_final(status, 9) then return {'final', 0} end
-- A newer run of this request holds it (fencing): this one must change nothing.
if ARGV[6] ~= '' and record[2] ~= ARGV[6] then return {'stale', 0} end
if ARGV[6] ~= '' and record[3] and redis.call('GET', KEYS[1]) == id then
  -- This very run was let through already: redis-py replayed the script after its reply was
  -- lost. Say `go` again rather than making the run wait out its own hold.
  local clock = redis.call('TIME')
  if tonumber(record[3]) > tonumber(clock[1]) + tonumber(clock[2]) / 1000000 then
    local started = redis.call('HGET', KEYS[3], 'call_started_at') or '0'
    return {'go', 0, started}
  end
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head and head ~= id then
  -- Not its turn: it waits, with no task, until the request ahead finishes and promotes it.
  redis.call('ZADD', KEYS[6], '+inf', id)
  return {'turn', 0}
end
local window_ms = redis.call('PTTL', KEYS[1])
if window_ms > 0 and not (ARGV[8] == '1' and redis.call('GET', KEYS[1]) == id) then
  return {'window', window_ms}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[3])
if interval > 0 then
  local paused_ms = redis.call('PTTL', KEYS[8])
  if paused_ms > 0 then return {'rate', paused_ms} end
  local reserved = tonumber(redis.call('GET', KEYS[5]) or '-1')
  if reserved >= 0 then
    if reserved > now then return {'rate', reserved - now} end
  else
    local slot = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), now)
    redis.call('SET', KEYS[4], slot + interval, 'PX', math.max(slot + interval - now, 1) + 60000)
    if slot > now then
      redis.call('SET', KEYS[5], slot, 'PX', slot - now + 3600000)
      return {'rate', slot - now}
    end
  end
  -- Tango counts arrivals in a sliding window. Slots keep the average under the limit; this
  -- keeps a slot reached late (a busy worker, a slow wake-up) from crowding one window.
  local span, allowed = tonumber(ARGV[4]), tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - span)
  if redis.call('ZCARD', KEYS[7]) >= allowed then
    local oldest = tonumber(redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')[2])
    local allowed_at = oldest + span + 1
    -- Keep the slot this request already advanced the limiter for: it comes back at
    -- `allowed_at` as the holder of a reservation, instead of taking (and losing) another.
    redis.call('SET', KEYS[5], allowed_at, 'PX', allowed_at - now + 3600000)
    return {'rate', allowed_at - now}
  end
  redis.call('DEL', KEYS[5])
  redis.call('ZADD', KEYS[7], now, id .. '@' .. now)
  redis.call('PEXPIRE', KEYS[7], span + 60000)
end
local hold = tonumber(ARGV[2])
redis.call('SET', KEYS[1], id, 'PX', hold)
redis.call('HSET', KEYS[3], 'calling_until', (now + tonumber(ARGV[7])) / 1000)
redis.call('HSETNX', KEYS[3], 'call_started_at', now)
return {'go', 0, now}
"""
)

# KEYS: rate limiter, pause.  ARGV: pause (ms). After a 429 nobody calls until the pause
# ends: new slots start after it, and slots already reserved wait for it too.
_PAUSE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local resume = now + tonumber(ARGV[1])
if resume > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], resume, 'PX', resume - now + 60000)
end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
end
return resume
"""

# KEYS: rate limiter, recent calls.  ARGV: interval (ms), sliding span (ms), call label.
# Takes the next free slot for a call outside a resend and enters that call in the sliding
# window the gate checks, at the slot's time; returns ms until the slot.
_RESERVE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], slot + interval, 'PX', slot + interval - now + 60000)
redis.call('ZADD', KEYS[2], slot, ARGV[3] .. '@' .. slot)
redis.call('PEXPIRE', KEYS[2], slot - now + tonumber(ARGV[2]) + 60000)
return slot - now
"""

# Tango measures its own rate at arrival; a little headroom keeps network jitter from ever
# pushing two of our calls closer together than its limit allows.
RATE_HEADROOM = 1.03


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


class CallGate:
    """Admits calls to Tango: one per order per window, in order, within the rate limit."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, rate_limit: float, final_statuses: list[str]
    ) -> None:
        self._keys = keys
        self._start = client.register_script(_START)
        self._pause = client.register_script(_PAUSE)
        self._reserve = client.register_script(_RESERVE)
        self._interval_ms = int(1000 * RATE_HEADROOM / rate_limit + 0.999) if rate_limit else 0
        # The window Tango is taken to count arrivals in: a second, or one call's share of
        # time when the limit is under 1/s. We count our call starts over a window as much
        # longer as the slots are wider, so arrival jitter cannot crowd Tango's window.
        span = max(1.0, 1.0 / rate_limit) if rate_limit else 0.0
        self._span_ms = int(1000 * span * RATE_HEADROOM + 0.999)
        self._allowed_per_span = max(1, round(rate_limit * span))
        self._final_statuses = final_statuses

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
        window its own request holds (it still takes a rate-limit slot)."""
        keys = self._keys
        verdict, wait_ms, *rest = self._start(
            keys=[
                keys.order_window(reference_order_id),
                keys.order_fifo(reference_order_id),
                keys.record(request_id),
                keys.rate_limiter,
                keys.rate_reservation(request_id),
                keys.due_index,
                keys.rate_recent_calls,
                keys.rate_pause,
            ],
            args=[
                request_id,
                window_milliseconds(hold_seconds),
                self._interval_ms,
                self._span_ms,
                self._allowed_per_span,
                token,
                max(1, int((hold_seconds if call_seconds is None else call_seconds) * 1000)),
                "1" if probe else "",
                *self._final_statuses,
            ],
        )
        kind = Verdict(str(verdict))
        started = int(rest[0]) / 1000 if kind is Verdict.GO and rest else None
        return GateVerdict(kind, int(wait_ms) / 1000, started)

    def reserve_slot(self, label: str = "call") -> float:
        """Take the fleet's next rate-limit slot for a call outside a resend (an order
        listing), entered in the same sliding window as resends; returns the seconds to wait
        for it (0 when the limit is off)."""
        if not self._interval_ms:
            return 0.0
        waited = self._reserve(
            keys=[self._keys.rate_limiter, self._keys.rate_recent_calls],
            args=[self._interval_ms, self._span_ms, f"{label}:{uuid.uuid4().hex[:8]}"],
        )
        return int(waited) / 1000

    def pause(self, seconds: float) -> None:
        """Hold back every worker's next call by `seconds` (Tango answered 429)."""
        if self._interval_ms:
            self._pause(
                keys=[self._keys.rate_limiter, self._keys.rate_pause],
                args=[max(1, int(seconds * 1000))],
            )
