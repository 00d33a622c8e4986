-- After a 429 nobody calls until the pause ends: new slots start after it, and slots already
-- reserved wait for it too. Returns when calls resume (Redis ms).
local limiter_key = KEYS[1]
local pause_key = KEYS[2]
local pause_ms = tonumber(ARGV[1])
--! include now

local now = now_milliseconds()
local resume = now + pause_ms
if resume > tonumber(redis.call('GET', limiter_key) or '0') then
  redis.call('SET', limiter_key, resume, 'PX', resume - now + 60000)
end
if redis.call('PTTL', pause_key) < pause_ms then
  redis.call('SET', pause_key, '1', 'PX', pause_ms)
end
return resume
