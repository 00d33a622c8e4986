-- Take back a run's "go" that did not reach REDIS_WAIT_REPLICAS replicas: no call was made,
-- so the marks the gate left for it go (the window it took, the call in flight, the call's
-- start), and the request is tried again once Redis is healthy. Marks that were there before
-- the go stay: an earlier call's start (a probe still owes it), a window a probe passed.
-- The rate-limit slot stays spent. Returns 1 when taken back, 0 when a newer run holds it.
local window_key = KEYS[1]
local record_key = KEYS[2]
local id = ARGV[1]
local run_token = ARGV[2]                  -- '' = no check
local started = ARGV[3]                    -- the go's call start (Redis ms)
local probe = ARGV[4]                      -- '1': the window was the request's before the go

local fields = redis.call('HMGET', record_key, 'run', 'call_started_at')
if run_token ~= '' and fields[1] ~= run_token then return 0 end
redis.call('HDEL', record_key, 'calling_until')
if fields[2] == started then redis.call('HDEL', record_key, 'call_started_at') end
if probe == '' and redis.call('GET', window_key) == id then redis.call('DEL', window_key) end
return 1
