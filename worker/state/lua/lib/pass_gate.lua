-- The gate every call to Tango passes (gate_start.lua, and start.lua right after a run
-- begins): the order's turn, its window and the fleet's rate limit, decided at once on
-- Redis's clock (worker/state/gate.py says why). Returns {verdict, wait_ms, call start
-- (Redis ms, `go` only)}; verdicts: go, turn, window, rate, final, unknown, stale.
-- On `go` the record gets `calling_until` (start + call bound: the call is over by then) and
-- `call_started_at` (kept if already there: the start of a call whose outcome nobody stored,
-- which a probe must still account for), and the order's call marker gets the call
-- (`<id>@<start>`), able to act until start + call bound + stall bound (lib/call_marker.lua).
-- A probe passes the window its own request holds: it is the prompt second call that asks
-- Tango whether an ambiguous first one acted. It also goes ahead of every rate-limit
-- reservation (lib/rate_slots.lua): it must reach Tango inside the window that call opened.
--! include is_final
--! include now
--! include order_queue
--! include rate_slots
--! include call_marker

local function pass_gate(
  window_key, order_key, record_key, limiter_key, reservations_key, due_key, recent_calls_key,
  pause_key, id, hold_ms, interval_ms, span_ms, allowed_per_span, run_token, call_bound_ms, probe,
  marker_key, epoch_key, stall_ms, marker_keep_ms
)
  local record = redis.call('HMGET', record_key, 'status', 'run', 'calling_until')
  local status = record[1]
  if not status then return {'unknown', 0} end
  if is_final(status) then return {'final', 0} end
  -- A newer run of this request holds it (fencing): this one must change nothing.
  if run_token ~= '' and record[2] ~= run_token then return {'stale', 0} end
  if run_token ~= '' and record[3] and redis.call('GET', window_key) == id then
    -- This very run was let through already: redis-py replayed the script after its reply was
    -- lost. Say `go` again rather than making the run wait out its own hold.
    if tonumber(record[3]) > now_seconds() then
      local started = redis.call('HGET', record_key, 'call_started_at') or '0'
      -- Written again (same value) so that a WAIT behind this reply covers the go.
      redis.call('HSET', record_key, 'calling_until', record[3])
      return {'go', 0, started}
    end
  end
  local head = first_waiting(order_key)
  if head and head ~= id then
    -- Not its turn: it waits, with no task, until the request ahead finishes and promotes it.
    redis.call('ZADD', due_key, '+inf', id)
    return {'turn', 0}
  end
  local window_ms = redis.call('PTTL', window_key)
  if window_ms > 0 and not (probe == '1' and redis.call('GET', window_key) == id) then
    return {'window', window_ms}
  end
  local now = now_milliseconds()
  if interval_ms > 0 then
    local paused_ms = redis.call('PTTL', pause_key)
    if paused_ms > 0 then return {'rate', paused_ms} end
    local wait_ms = take_rate_slot(
      limiter_key, reservations_key, recent_calls_key, id, now, interval_ms, span_ms,
      allowed_per_span, probe == '1'
    )
    if wait_ms > 0 then return {'rate', wait_ms} end
  end
  redis.call('SET', window_key, id, 'PX', hold_ms)
  redis.call('HSET', record_key, 'calling_until', (now + call_bound_ms) / 1000)
  redis.call('HSETNX', record_key, 'call_started_at', now)
  mark_call_at_gate(
    marker_key, epoch_key, id .. '@' .. now, now + call_bound_ms + stall_ms, now, marker_keep_ms
  )
  return {'go', 0, now}
end
