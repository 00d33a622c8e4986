-- Take the next free slot for a call outside a resend and enter that call in the sliding
-- window the gate checks, at the slot's time. Returns ms until the slot.
local limiter_key = KEYS[1]
local recent_calls_key = KEYS[2]
local interval_ms = tonumber(ARGV[1])
local span_ms = tonumber(ARGV[2])
local label = ARGV[3]
--! include now

local now = now_milliseconds()
local slot = math.max(tonumber(redis.call('GET', limiter_key) or '0'), now)
redis.call('SET', limiter_key, slot + interval_ms, 'PX', slot + interval_ms - now + 60000)
redis.call('ZADD', recent_calls_key, slot, label .. '@' .. slot)
redis.call('PEXPIRE', recent_calls_key, slot - now + span_ms + 60000)
return slot - now
