-- An order's requests, in one sorted set (RedisKeys.order_fifo): a waiting request scores its
-- place in the queue (the enqueue sequence, > 0), a finished one minus its creation time (epoch
-- seconds, < 0), kept for listings until the record TTL. One key per order, not a queue and a
-- history apart: a waiting request costs one key less.

-- The request whose turn it is, or nil.
local function first_waiting(order_key)
  return redis.call('ZRANGEBYSCORE', order_key, '(0', '+inf', 'LIMIT', 0, 1)[1]
end

-- Every waiting request, first in line first.
local function waiting_requests(order_key)
  return redis.call('ZRANGEBYSCORE', order_key, '(0', '+inf')
end

-- A request finished: it leaves the queue and stays in the order's history.
local function mark_finished(order_key, id, created_at)
  redis.call('ZADD', order_key, 'XX', -created_at, id)
end

-- Finished requests created before `oldest` (epoch seconds) leave the history.
local function forget_finished_before(order_key, oldest)
  redis.call('ZREMRANGEBYSCORE', order_key, '(' .. -oldest, '(0')
end
