-- Store a new request with its place in its order's queue, unless its idempotency key or an
-- identical pending request of the order already stands for it. A new request first in its
-- order's queue has its task message pushed here, in the same atomic step.
-- Returns {id, outcome ('created', 'merged', 'idempotent'), is_head (1/0), dispatch number
-- (0 when no task was queued)}.
local record_key = KEYS[1]
local idempotency_key = KEYS[2]            -- '' for none
local order_requests_key = KEYS[3]
local due_key = KEYS[4]
local fifo_key = KEYS[5]
local pending_key = KEYS[6]
local sequence_key = KEYS[7]
local by_time_key = KEYS[8]
local dispatched_key = KEYS[9]
local dispatch_sequence_key = KEYS[10]
local unfinished_key = KEYS[11]
local metrics_key = KEYS[12]               -- '' = not counted
local queue_key = KEYS[13]                 -- the broker list the task message goes to; '' = none
local id = ARGV[1]
local doc = ARGV[2]
local ttl = tonumber(ARGV[3])
local idempotency_ttl = ARGV[4]
local created_at = tonumber(ARGV[5])       -- epoch seconds
local fingerprint = ARGV[6]
local lease = tonumber(ARGV[7])            -- seconds
local record_prefix = ARGV[8]
local order = ARGV[9]
local counter_created = ARGV[10]           -- metrics fields counting each outcome
local counter_merged = ARGV[11]
local counter_idempotent = ARGV[12]
local message = ARGV[13]                   -- '' = none: the scheduler publishes it
--! include is_final
--! include now

-- Counted in the same step, so a submission costs the receiver one round trip, not two.
local function count(field)
  if metrics_key ~= '' then redis.call('HINCRBYFLOAT', metrics_key, field, 1) end
end

if idempotency_key ~= '' then
  local existing = redis.call('GET', idempotency_key)
  if existing then
    count(counter_idempotent)
    return {existing, 'idempotent', 0, 0}
  end
end
local pending = redis.call('HGET', pending_key, fingerprint)
if pending then
  local status = redis.call('HGET', record_prefix .. pending, 'status')
  if status and not is_final(status) then
    redis.call('HINCRBY', record_prefix .. pending, 'merges', 1)
    if idempotency_key ~= '' then
      redis.call('SET', idempotency_key, pending, 'EX', idempotency_ttl)
    end
    count(counter_merged)
    return {pending, 'merged', 0, 0}
  end
end
count(counter_created)
if idempotency_key ~= '' then redis.call('SET', idempotency_key, id, 'EX', idempotency_ttl) end
redis.call('HSET', record_key, 'doc', doc, 'status', 'queued', 'merges', 0)
redis.call('EXPIRE', record_key, ttl)
redis.call('ZADD', order_requests_key, created_at, id)
redis.call('EXPIRE', order_requests_key, ttl)
redis.call('ZADD', by_time_key, created_at, id)
redis.call('ZREMRANGEBYSCORE', by_time_key, '-inf', created_at - ttl)
redis.call('ZADD', fifo_key, redis.call('INCR', sequence_key), id)
redis.call('EXPIRE', fifo_key, ttl)
redis.call('HSET', pending_key, fingerprint, id)
redis.call('EXPIRE', pending_key, ttl)
redis.call('HSET', unfinished_key, id, order)
local head = redis.call('ZRANGE', fifo_key, 0, 0)[1]
if head ~= id then
  -- Waits for its turn: the request ahead promotes it when it finishes.
  redis.call('ZADD', due_key, '+inf', id)
  return {id, 'created', 0, 0}
end
if queue_key == '' or message == '' then
  -- No message to push: due now, for the scheduler to publish.
  redis.call('ZADD', due_key, now_seconds(), id)
  return {id, 'created', 1, 0}
end
-- Queued with it; if that message is lost, the scheduler releases the request again (the
-- message carries no dispatch number: the worker that takes it finds it stored here).
redis.call('LPUSH', queue_key, message)
local dispatch = redis.call('INCR', dispatch_sequence_key)
redis.call('HSET', dispatched_key, id, dispatch)
redis.call('ZADD', due_key, now_seconds() + lease, id)
return {id, 'created', 1, dispatch}
