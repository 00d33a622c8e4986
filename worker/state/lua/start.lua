-- A run begins (lib/begin_run.lua) and, in the same step, passes the gate (lib/pass_gate.lua)
-- when nothing needs a look first: no interrupted call, no probe owed, not woken before it
-- was due. That is a resend's usual run, which so costs one round trip fewer. Otherwise, and
-- for a record an earlier version stored (it keeps none of the fields this reads), the run
-- has only begun and the worker passes the gate itself.
-- Returns begin_run's reply; an `ok` one gets the gate's reply appended ({verdict, wait_ms,
-- call start}, from its 8th item on), or {''} when the gate was not passed here.
local record_key = KEYS[1]
local due_key = KEYS[2]
local dispatched_key = KEYS[3]
local consumed_key = KEYS[4]
local window_key = KEYS[5]
local order_key = KEYS[6]                  -- the order's requests (lib/order_queue.lua)
local limiter_key = KEYS[7]
local reservations_key = KEYS[8]
local recent_calls_key = KEYS[9]
local pause_key = KEYS[10]
local marker_key = KEYS[11]                -- the order's call marker (lib/call_marker.lua)
local epoch_key = KEYS[12]
local memo_key = KEYS[13]                  -- this call's reply, for a replay (its nonce)
local id = ARGV[1]
local lease = tonumber(ARGV[2])            -- seconds
local carried_dispatch = ARGV[3]           -- the message's dispatch number; '' when it has none
local hold_ms = tonumber(ARGV[4])
local interval_ms = tonumber(ARGV[5])      -- 0 = no rate limit
local span_ms = tonumber(ARGV[6])
local allowed_per_span = tonumber(ARGV[7])
local call_bound_ms = tonumber(ARGV[8])
local due_tolerance = tonumber(ARGV[9])    -- seconds: a wake-up this close to its time is due
local stall_ms = tonumber(ARGV[10])        -- a call may act this long after its bound
local marker_keep_ms = tonumber(ARGV[11])
local memo_ttl = ARGV[12]                  -- seconds
--! include begin_run
--! include pass_gate

-- A replay (redis-py sends the script again when its reply was lost) answers the first reply:
-- run again, it would meet its own `calling_until` and answer `busy`, and no call be made.
-- The memo leaves out the record's document (it holds the recipient's contact data, which
-- Redis keeps in request records only) and its audit fields (who asked, in the caller's
-- words); a replay reads them again from the record, which the run it answers has not
-- changed yet.
local memo = redis.call('GET', memo_key)
if memo then
  local first = cjson.decode(memo)
  if first[1] == 'ok' then
    first[3] = read_doc(record_key)
    first[7] = read_audit(record_key)
  end
  return first
end

local function start()
  local begun = begin_run(record_key, due_key, dispatched_key, consumed_key, id, lease, carried_dispatch)
  if begun[1] ~= 'ok' then return begun end
  -- The token as the record holds it (HINCRBY answered a number; HGET a string).
  local token, interrupted = tostring(begun[2]), begun[6]
  local fields = redis.call('HMGET', record_key, 'dn', 'nb', 'pr')
  local not_before = tonumber(fields[2] or '0')
  if interrupted ~= '' or not fields[1] or fields[3] or not_before > now_seconds() + due_tolerance then
    begun[8] = ''
    return begun
  end
  local gate = pass_gate(
    window_key, order_key, record_key, limiter_key, reservations_key, due_key, recent_calls_key,
    pause_key, id, hold_ms, interval_ms, span_ms, allowed_per_span, token, call_bound_ms, '',
    marker_key, epoch_key, stall_ms, marker_keep_ms
  )
  begun[8], begun[9], begun[10] = gate[1], gate[2], gate[3] or ''
  return begun
end

local reply = start()
local doc, audit = reply[3], reply[7]
if reply[1] == 'ok' then reply[3], reply[7] = '', '' end
redis.call('SET', memo_key, cjson.encode(reply), 'EX', memo_ttl)
if reply[1] == 'ok' then reply[3], reply[7] = doc, audit end
return reply
