-- The gate every call to Tango passes (lib/pass_gate.lua), for a run that has begun.
-- Returns {verdict, wait_ms, call start (Redis ms, `go` only)}.
local window_key = KEYS[1]
local order_key = KEYS[2]                  -- the order's requests (lib/order_queue.lua)
local record_key = KEYS[3]
local limiter_key = KEYS[4]                -- the fleet's next free slot (GCRA)
local reservations_key = KEYS[5]           -- reserved slots (lib/rate_slots.lua)
local due_key = KEYS[6]
local recent_calls_key = KEYS[7]           -- call starts in the sliding span
local pause_key = KEYS[8]                  -- set after a 429
local marker_key = KEYS[9]                 -- the order's call marker (lib/call_marker.lua)
local epoch_key = KEYS[10]
local id = ARGV[1]
local hold_ms = tonumber(ARGV[2])
local interval_ms = tonumber(ARGV[3])      -- 0 = no rate limit
local span_ms = tonumber(ARGV[4])
local allowed_per_span = tonumber(ARGV[5])
local run_token = ARGV[6]                  -- '' = no check
local call_bound_ms = tonumber(ARGV[7])
local probe = ARGV[8]                      -- '1' or ''
local stall_ms = tonumber(ARGV[9])         -- a call may act this long after its bound
local marker_keep_ms = tonumber(ARGV[10])
--! include pass_gate

return pass_gate(
  window_key, order_key, record_key, limiter_key, reservations_key, due_key, recent_calls_key,
  pause_key, id, hold_ms, interval_ms, span_ms, allowed_per_span, run_token, call_bound_ms, probe,
  marker_key, epoch_key, stall_ms, marker_keep_ms
)
