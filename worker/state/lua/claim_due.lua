-- A scheduler claims the requests that are due, re-scoring each to now + lease so that of any
-- number of schedulers exactly one claims it, and tells a lost task message from a slow one
-- (worker/queueing/scheduler.py says how). A replayed claim returns its first reply.
-- Returns {id, dispatch number, id, dispatch number, ..., next due (s from now, -1 = none)}.
local due_key = KEYS[1]
local dispatched_key = KEYS[2]
local consumed_key = KEYS[3]
local dispatch_sequence_key = KEYS[4]
local memo_key = KEYS[5]                   -- this claim's reply, for a replay
local queue_key = KEYS[6]                  -- the broker list resend tasks wait in
local lease = tonumber(ARGV[1])            -- seconds
local batch = tonumber(ARGV[2])
local record_prefix = ARGV[3]
local memo_ttl = ARGV[4]                   -- seconds
local recheck = tonumber(ARGV[5])          -- seconds: when to look again at a message maybe lost
local recheck_nearest = tonumber(ARGV[6])  -- how many messages past the last taken count as near
--! include now

local memo = redis.call('GET', memo_key)
if memo then return cjson.decode(memo) end
local now = now_seconds()
local ids = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, batch)
local queued = redis.call('LLEN', queue_key)
local consumed = tonumber(redis.call('GET', consumed_key) or '0')
local reply = {}
for _, id in ipairs(ids) do
  local calling_until = tonumber(redis.call('HGET', record_prefix .. id, 'calling_until') or '0')
  local dispatch = tonumber(redis.call('HGET', dispatched_key, id) or '-1')
  if calling_until > now then
    redis.call('ZADD', due_key, calling_until, id)
  elseif dispatch >= 0 and queued > 0 and dispatch > consumed then
    -- Still queued, or taken and lost before its run began (a worker killed then). Which is
    -- known once a message published after it is taken, soon when it is near the front: one
    -- of the `recheck_nearest` messages after the last taken is looked at again in `recheck`
    -- seconds, not a whole lease; a deep backlog keeps the lease, costing nothing meanwhile.
    local wait = lease
    if dispatch - consumed <= recheck_nearest then wait = math.min(lease, recheck) end
    redis.call('ZADD', due_key, now + wait, id)
  else
    local number = redis.call('INCR', dispatch_sequence_key)
    redis.call('HSET', dispatched_key, id, number)
    redis.call('ZADD', due_key, now + lease, id)
    table.insert(reply, id)
    table.insert(reply, tostring(number))
  end
end
local next_in = -1
if #ids < batch then
  local first = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  if first[2] and first[2] ~= 'inf' then next_in = tonumber(first[2]) - now end
  if next_in == math.huge then next_in = -1 end
else
  next_in = 0
end
table.insert(reply, tostring(next_in))
if #reply > 1 then redis.call('SET', memo_key, cjson.encode(reply), 'EX', memo_ttl) end
return reply
