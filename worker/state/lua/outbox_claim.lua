-- Claim due callback entries: each gets a new claim token and is re-scored to now + lease, so
-- of any number of delivery threads exactly one holds an entry until its lease runs out.
-- Returns {id, token, id, token, ..., next due (s from now, -1 = nothing scheduled)}.
local outbox_key = KEYS[1]
local claims_key = KEYS[2]
local lease = tonumber(ARGV[1])            -- seconds
local batch = ARGV[2]
--! include now

local now = now_seconds()
local ids = redis.call('ZRANGEBYSCORE', outbox_key, '-inf', now, 'LIMIT', 0, batch)
local reply = {}
for _, id in ipairs(ids) do
  local token = redis.call('HINCRBY', claims_key, id, 1)
  redis.call('ZADD', outbox_key, now + lease, id)
  table.insert(reply, id)
  table.insert(reply, tostring(token))
end
local next_in = -1
local first = redis.call('ZRANGE', outbox_key, 0, 0, 'WITHSCORES')
if first[2] then next_in = tonumber(first[2]) - now end
if next_in == math.huge then next_in = -1 end
table.insert(reply, tostring(next_in))
return reply
