"""Lua scripts that change a request together with its order's queue, in one atomic step.

Conventions: ARGV ends with the final statuses (sent, failed, cancelled). The due index scores
a request by when a task should next run for it (epoch seconds, Redis's clock); "+inf" means
it waits for its turn behind an earlier request of its order.
"""

# A shared prelude: is `status` one of the final statuses passed from ARGV[first_final] on?
IS_FINAL = """
local function is_final(status, first_final)
  for i = first_final, #ARGV do
    if status == ARGV[i] then return true end
  end
  return false
end
"""

# KEYS: record, idempotency ('' for none), order requests, due index, order fifo, order pending,
#       sequence, requests by time
# ARGV: id, doc, ttl, idempotency ttl, created (epoch), fingerprint, lease seconds,
#       record key prefix, final statuses...
# Returns {id, outcome, is_head}.
CREATE = (
    IS_FINAL
    + """
local id = ARGV[1]
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {existing, 'idempotent', 0} end
end
local pending = redis.call('HGET', KEYS[6], ARGV[6])
if pending then
  local status = redis.call('HGET', ARGV[8] .. pending, 'status')
  if status and not is_final(status, 9) then
    redis.call('HINCRBY', ARGV[8] .. pending, 'merges', 1)
    if KEYS[2] ~= '' then redis.call('SET', KEYS[2], pending, 'EX', ARGV[4]) end
    return {pending, 'merged', 0}
  end
end
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], id, 'EX', ARGV[4]) end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', 'queued', 'merges', 0)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], ARGV[5], id)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('ZADD', KEYS[8], ARGV[5], id)
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', tonumber(ARGV[5]) - ttl)
redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[7]), id)
redis.call('EXPIRE', KEYS[5], ttl)
redis.call('HSET', KEYS[6], ARGV[6], id)
redis.call('EXPIRE', KEYS[6], ttl)
local head = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
if head == id then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[4], tonumber(now[1]) + tonumber(now[2]) / 1000000 + tonumber(ARGV[7]), id)
  return {id, 'created', 1}
end
redis.call('ZADD', KEYS[4], '+inf', id)
return {id, 'created', 0}
"""
)

# The order's window after a call, in the same step as the record: '' leaves it, 'release'
# drops it (owner only), a number of ms re-anchors it (owner, or nobody: after a resend the
# window must exist even if the hold lapsed during a very slow call).
SET_WINDOW = """
local function set_window(key, id, action)
  if key == '' or action == '' then return 0 end
  local holder = redis.call('GET', key)
  if action == 'release' then
    if holder == id then return redis.call('DEL', key) end
  elseif holder == false or holder == id then
    redis.call('SET', key, id, 'PX', action)
    return 1
  end
  return 0
end
"""

# KEYS: record, due index, order window ('' = none).
# ARGV: id, doc, status, due score ('' keeps it), window action, final statuses...
# Refuses (0) when the request already reached a final status (finished or cancelled).
SAVE = (
    IS_FINAL
    + SET_WINDOW
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current or is_final(current, 6) then return 0 end
set_window(KEYS[3], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
redis.call('HDEL', KEYS[1], 'calling_until')
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) end
return 1
"""
)

# KEYS: record, due index, order fifo, order pending, order window, callback outbox ('' = none).
# ARGV: id, doc, final status, fingerprint, promote margin (s), only-if-cancellable flag,
#       window action (see SET_WINDOW), final statuses...
# Stores the final record, takes it off the order's queue, and schedules the next request of
# the order for when the window ends. Returns 'done', 'unknown', 'in_flight' or the status
# the request already had.
FINISH = (
    IS_FINAL
    + SET_WINDOW
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return 'unknown' end
if is_final(current, 8) then return current end
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1000000
if ARGV[6] ~= '' then
  local calling_until = tonumber(redis.call('HGET', KEYS[1], 'calling_until') or '0')
  if calling_until > now_s then return 'in_flight' end
end
set_window(KEYS[5], ARGV[1], ARGV[7])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
redis.call('HDEL', KEYS[1], 'calling_until')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[4], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[4], ARGV[4]) end
-- The outcome callback is owed from this moment: recorded with the outcome, never without it.
if KEYS[6] ~= '' then redis.call('ZADD', KEYS[6], now_s, ARGV[1]) end
local next_id = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if next_id then
  local score = redis.call('ZSCORE', KEYS[2], next_id)
  if score == false or score == 'inf' or tonumber(score) == math.huge then
    local window_ms = redis.call('PTTL', KEYS[5])
    if window_ms < 0 then window_ms = 0 end
    redis.call('ZADD', KEYS[2], now_s + window_ms / 1000 + tonumber(ARGV[5]), next_id)
  end
end
return 'done'
"""
)

# KEYS: record, order requests, order fifo, order pending, due index, idempotency ('' for none),
#       requests by time
# ARGV: id, fingerprint
# Forgets a request whose task could not be queued; a request queued behind it is released.
UNDO_CREATE = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('HGET', KEYS[4], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[4], ARGV[2]) end
if KEYS[6] ~= '' and redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
local next_id = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if next_id then
  local score = redis.call('ZSCORE', KEYS[5], next_id)
  if score == false or score == 'inf' or tonumber(score) == math.huge then
    local now = redis.call('TIME')
    redis.call('ZADD', KEYS[5], tonumber(now[1]), next_id)
  end
end
return 1
"""
