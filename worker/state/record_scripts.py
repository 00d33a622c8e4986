"""Lua scripts that change a request together with its order's queue, in one atomic step.

Conventions: ARGV ends with the final statuses (sent, failed, cancelled). The due index scores
a request by when a task should next run for it (epoch seconds, Redis's clock); "+inf" means
it waits for its turn behind an earlier request of its order.

Fencing: every run of a request's task takes a token in `BEGIN` (the record's `run` field,
incremented). The gate and every script that saves or finishes the request after a call check
it, so when two task messages of one request are alive at once (a redelivery, a re-release, a
publish that kombu retried), only the newest run changes the request; a stale run finds its
writes refused and stops.
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

# Redis's clock in epoch seconds.
NOW = """
local function now_seconds()
  local time = redis.call('TIME')
  return tonumber(time[1]) + tonumber(time[2]) / 1000000
end
"""

# Schedule the next request of an order, if it waits for its turn, for when the window ends.
PROMOTE_NEXT = """
local function promote_next(due_key, fifo_key, window_key, now_s, margin)
  local next_id = redis.call('ZRANGE', fifo_key, 0, 0)[1]
  if not next_id then return end
  local score = redis.call('ZSCORE', due_key, next_id)
  if score == false or score == 'inf' or tonumber(score) == math.huge then
    local window_ms = 0
    if window_key ~= '' then window_ms = math.max(redis.call('PTTL', window_key), 0) end
    redis.call('ZADD', due_key, now_s + window_ms / 1000 + margin, next_id)
  end
end
"""

# KEYS: record, idempotency ('' for none), order requests, due index, order fifo, order pending,
#       sequence, requests by time, dispatched, dispatch sequence, unfinished orders,
#       metrics ('' = none), the broker list the task message goes to ('' = none)
# ARGV: id, doc, ttl, idempotency ttl, created (epoch), fingerprint, lease seconds,
#       record key prefix, order, metrics fields counting a new / merged / repeated-key
#       submission, task message ('' = none: the scheduler publishes it), final statuses...
# Returns {id, outcome, is_head, dispatch number (0 when no task was queued)}. A new request
# first in its order's queue has its task message pushed here, in the same atomic step.
CREATE = (
    IS_FINAL
    + NOW
    + """
local id = ARGV[1]
-- Counted in the same step, so a submission costs the receiver one round trip, not two.
local function count(field)
  if KEYS[12] ~= '' then redis.call('HINCRBYFLOAT', KEYS[12], field, 1) end
end
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    count(ARGV[12])
    return {existing, 'idempotent', 0, 0}
  end
end
local pending = redis.call('HGET', KEYS[6], ARGV[6])
if pending then
  local status = redis.call('HGET', ARGV[8] .. pending, 'status')
  if status and not is_final(status, 14) then
    redis.call('HINCRBY', ARGV[8] .. pending, 'merges', 1)
    if KEYS[2] ~= '' then redis.call('SET', KEYS[2], pending, 'EX', ARGV[4]) end
    count(ARGV[11])
    return {pending, 'merged', 0, 0}
  end
end
count(ARGV[10])
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
redis.call('HSET', KEYS[11], id, ARGV[9])
local head = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
if head == id then
  if KEYS[13] == '' or ARGV[13] == '' then
    -- No message to push: due now, for the scheduler to publish.
    redis.call('ZADD', KEYS[4], now_seconds(), id)
    return {id, 'created', 1, 0}
  end
  -- Queued with it; if that message is lost, the scheduler releases the request again (the
  -- message carries no dispatch number: the worker that takes it finds it stored here).
  redis.call('LPUSH', KEYS[13], ARGV[13])
  local dispatch = redis.call('INCR', KEYS[10])
  redis.call('HSET', KEYS[9], id, dispatch)
  redis.call('ZADD', KEYS[4], now_seconds() + tonumber(ARGV[7]), id)
  return {id, 'created', 1, dispatch}
end
redis.call('ZADD', KEYS[4], '+inf', id)
return {id, 'created', 0, 0}
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

# KEYS: record, due index, dispatched, dispatch consumed.
# ARGV: id, lease seconds, dispatch number ('' when the message carries none: then the number
#       stored for the request is taken as its), final statuses...
# A worker takes a request's task message. Returns {'unknown'}, {'final', status},
# {'busy', ms until the call in flight must be over} or {'ok', run token, doc, status, merges,
# interrupted call's start (Redis ms; '' when none)}. An interrupted call is one that passed
# the gate and whose outcome nobody stored (its worker died mid-call): `calling_until` is still
# on the record but past. The fields stay until a run stores an outcome (SAVE), so a run that
# dies before that leaves the evidence to the next one.
BEGIN = (
    IS_FINAL
    + NOW
    + """
local id = ARGV[1]
local stored = tonumber(redis.call('HGET', KEYS[3], id) or '-1')
-- A message pushed by the create script carries no number: the one stored for it is its own.
local dispatch = stored
if ARGV[3] ~= '' then dispatch = tonumber(ARGV[3]) end
if dispatch >= 0 then
  if stored == dispatch then redis.call('HDEL', KEYS[3], id) end
  if dispatch > tonumber(redis.call('GET', KEYS[4]) or '0') then
    redis.call('SET', KEYS[4], dispatch)
  end
end
local fields = redis.call(
  'HMGET', KEYS[1], 'status', 'doc', 'merges', 'calling_until', 'call_started_at')
local status = fields[1]
if not status then return {'unknown'} end
if is_final(status, 4) then return {'final', status} end
local now = now_seconds()
local calling_until = tonumber(fields[4] or '0')
if calling_until > now then
  -- A run is calling Tango for it (maybe on a worker that died): that run is responsible
  -- until the call must be over; then the request is released again, not before.
  local score = redis.call('ZSCORE', KEYS[2], id)
  if score == false or tonumber(score) < calling_until then
    redis.call('ZADD', KEYS[2], calling_until, id)
  end
  return {'busy', math.ceil((calling_until - now) * 1000)}
end
local token = redis.call('HINCRBY', KEYS[1], 'run', 1)
-- If this run dies before it saves the request, the scheduler releases it after the lease.
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
local interrupted = ''
if fields[4] then interrupted = fields[5] or '' end
return {'ok', token, fields[2], status, fields[3] or '0', interrupted}
"""
)

# KEYS: record, due index, order window ('' = none).
# ARGV: id, doc, status, due score ('' keeps it), window action, run token ('' = no check),
#       final statuses...
# Refuses (0) when the request already reached a final status (finished or cancelled), or when
# a newer run holds the request.
SAVE = (
    IS_FINAL
    + SET_WINDOW
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current or is_final(current, 7) then return 0 end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'run') ~= ARGV[6] then return 0 end
set_window(KEYS[3], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
-- The run stores what became of its call (an unresolved one is in the doc from now on).
redis.call('HDEL', KEYS[1], 'calling_until', 'call_started_at')
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) end
return 1
"""
)

# KEYS: record, due index, order fifo, order pending, order window, callback outbox ('' = none),
#       dispatched, unfinished orders, metrics ('' = none).
# ARGV: id, doc, final status, fingerprint, promote margin (s), only-if-cancellable flag,
#       window action (see SET_WINDOW), run token ('' = no check), metric counts (JSON object
#       of metrics field -> amount, '' = none), final statuses...
# Stores the final record, takes it off the order's queue, and schedules the next request of
# the order for when the window ends. Returns 'done', 'unknown', 'in_flight', 'stale' (a newer
# run holds the request) or the status the request already had.
FINISH = (
    IS_FINAL
    + SET_WINDOW
    + NOW
    + PROMOTE_NEXT
    + """
local fields = redis.call('HMGET', KEYS[1], 'status', 'run', 'calling_until')
local current = fields[1]
if not current then return 'unknown' end
if is_final(current, 10) then return current end
if ARGV[8] ~= '' and fields[2] ~= ARGV[8] then return 'stale' end
local now_s = now_seconds()
if ARGV[6] ~= '' and tonumber(fields[3] or '0') > now_s then return 'in_flight' end
set_window(KEYS[5], ARGV[1], ARGV[7])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
redis.call('HDEL', KEYS[1], 'calling_until')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
if redis.call('HGET', KEYS[4], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[4], ARGV[4]) end
-- The outcome callback is owed from this moment: recorded with the outcome, never without it.
if KEYS[6] ~= '' then redis.call('ZADD', KEYS[6], now_s, ARGV[1]) end
-- Counted with the outcome, so a worker that dies right after storing it loses no count.
if KEYS[9] ~= '' and ARGV[9] ~= '' then
  for name, amount in pairs(cjson.decode(ARGV[9])) do
    redis.call('HINCRBYFLOAT', KEYS[9], name, amount)
  end
end
promote_next(KEYS[2], KEYS[3], KEYS[5], now_s, tonumber(ARGV[5]))
return 'done'
"""
)

# KEYS: due index, dispatched.  ARGV: id, dispatch number.
# The task message of a new request could not be published: make the request due now, so the
# next scheduler pass releases it (nothing is deleted: someone may already hold its id).
RELEASE_UNPUBLISHED = """
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1') == tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local time = redis.call('TIME')
return redis.call('ZADD', KEYS[1], 'XX', tonumber(time[1]) + tonumber(time[2]) / 1000000, ARGV[1])
"""

# KEYS: record, due index, dispatched, unfinished orders, order fifo, order pending, order window.
# ARGV: id, promote margin (s).
# A request whose record has gone (expired, deleted, lost) while it was unfinished: take it off
# every index, so its order's queue moves on instead of waiting behind it forever.
DROP_ORPHAN = (
    NOW
    + PROMOTE_NEXT
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if KEYS[5] ~= '' then
  local was_head = redis.call('ZRANGE', KEYS[5], 0, 0)[1] == ARGV[1]
  redis.call('ZREM', KEYS[5], ARGV[1])
  local pending = redis.call('HGETALL', KEYS[6])
  for i = 1, #pending, 2 do
    if pending[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[6], pending[i]) end
  end
  if was_head then promote_next(KEYS[2], KEYS[5], KEYS[7], now_seconds(), tonumber(ARGV[2])) end
end
return 1
"""
)
