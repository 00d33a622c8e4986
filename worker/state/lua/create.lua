-- Store a new request with its place in its order's queue, unless its idempotency key or an
-- identical pending request of the order already stands for it. A new request first in its
-- order's queue has its task message pushed here, in the same atomic step.
-- With a recent-resend guard (recent_seconds > 0), a request whose order was sent to the same
-- recipient within that many seconds is not stored either: the request that was sent stands
-- for it (outcome 'recent'). Decided here, in the create's own atomic step, so two asks at the
-- same moment cannot both pass.
-- Returns {id, outcome ('created', 'merged', 'idempotent', 'recent'), is_head (1/0), dispatch
-- number (0 when no task was queued)}.
local record_key = KEYS[1]
local idempotency_key = KEYS[2]            -- '' for none
local due_key = KEYS[3]
local order_key = KEYS[4]                  -- the order's requests (see RedisKeys.order_fifo)
local legacy_pending_key = KEYS[5]         -- fingerprint -> id, as earlier versions kept it
local sequence_key = KEYS[6]
local by_time_key = KEYS[7]
local dispatched_key = KEYS[8]
local dispatch_sequence_key = KEYS[9]
local metrics_key = KEYS[10]               -- '' = not counted
local queue_key = KEYS[11]                 -- the broker list the task message goes to; '' = none
local id = ARGV[1]
local doc = ARGV[2]
local ttl = tonumber(ARGV[3])
local idempotency_ttl = ARGV[4]
local created_at = tonumber(ARGV[5])       -- epoch seconds
local fingerprint = ARGV[6]                -- 32 hex digits
local lease = tonumber(ARGV[7])            -- seconds
local record_prefix = ARGV[8]
local counter_created = ARGV[9]            -- metrics fields counting each outcome
local counter_merged = ARGV[10]
local counter_idempotent = ARGV[11]
local message = ARGV[12]                   -- '' = none: the scheduler publishes it
local recent_seconds = tonumber(ARGV[13])  -- the guard's span; 0 = off (or forced)
local recipient = ARGV[14]                 -- see recipient_of: the request's effective recipient
local counter_recent = ARGV[15]
local audit = ARGV[16]                     -- JSON {hash field: value}: who asked (record_codec)
--! include is_final
--! include now
--! include doc
--! include order_queue

-- The record keeps 64 bits of its fingerprint: enough to tell apart the few waiting requests
-- of one order, and half the bytes (the hash that earlier versions kept has it whole).
local short_fingerprint = string.sub(fingerprint, 1, 16)

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
-- The guard: the most recently created finished requests of the order are read (a sent one
-- was created before it was sent, so a recent send is among them unless more than RECENT_SCAN
-- requests of the order finished since it was created).
local RECENT_SCAN = 32
local function recipient_of(request)
  -- An empty field means the order's own: as `recipient_key` in
  -- worker/state/record_model.py builds it.
  local function text(name)
    local value = request[name]
    if type(value) ~= 'string' then return '' end
    return value
  end
  return string.lower(text('newEmail')) .. '\n' .. text('newMobile') .. '\n'
    .. string.upper(text('newDeliveryMethod'))
end
local function sent_to_same_recipient_since(oldest)
  local finished = redis.call('ZRANGEBYSCORE', order_key, '-inf', '(0', 'LIMIT', 0, RECENT_SCAN)
  local newest_id, newest_at = nil, oldest
  for _, earlier in ipairs(finished) do
    if redis.call('HGET', record_prefix .. earlier, 'status') == 'sent' then
      local stored = read_doc(record_prefix .. earlier)
      -- Documents of the positional format (worker/state/record_codec.py): [format, order,
      -- request, created (us since the epoch), updated, ..., sent (us since created) at 10].
      -- A document an earlier version stored as an object is not read: it was written before
      -- this guard existed.
      if stored and string.sub(stored, 1, 1) == '[' then
        local values = cjson.decode(stored)
        local sent = values[10]
        if type(sent) ~= 'number' then sent = tonumber(values[5]) or 0 end
        if type(values[4]) == 'number' and type(values[3]) == 'table' then
          local sent_at = (values[4] + sent) / 1000000
          if sent_at >= newest_at and recipient_of(values[3]) == recipient then
            newest_id, newest_at = earlier, sent_at
          end
        end
      end
    end
  end
  return newest_id
end

if recent_seconds > 0 then
  local earlier = sent_to_same_recipient_since(now_seconds() - recent_seconds)
  if earlier then
    -- Remembered under the key too, so a redelivery of this very ask answers the same id
    -- after the span has passed, rather than sending then.
    if idempotency_key ~= '' then
      redis.call('SET', idempotency_key, earlier, 'EX', idempotency_ttl)
    end
    count(counter_recent)
    return {earlier, 'recent', 0, 0}
  end
end
-- An identical request of the order still waiting stands for this one. The order's waiting
-- requests are few (one per window), so each one's stored fingerprint is compared; a request
-- stored by an earlier version has none, and is found in the hash that version kept.
local legacy_pending = redis.call('HGET', legacy_pending_key, fingerprint)
for _, waiting in ipairs(waiting_requests(order_key)) do
  local fields = redis.call('HMGET', record_prefix .. waiting, 'fp', 'status')
  local same = fields[1] == short_fingerprint or (not fields[1] and waiting == legacy_pending)
  if same and fields[2] and not is_final(fields[2]) then
    redis.call('HINCRBY', record_prefix .. waiting, 'merges', 1)
    if idempotency_key ~= '' then
      redis.call('SET', idempotency_key, waiting, 'EX', idempotency_ttl)
    end
    count(counter_merged)
    return {waiting, 'merged', 0, 0}
  end
end
count(counter_created)
if idempotency_key ~= '' then redis.call('SET', idempotency_key, id, 'EX', idempotency_ttl) end
-- `merges` appears with the first merge; the fingerprint is kept for the ones to come.
redis.call('HSET', record_key, 'status', 'queued', 'fp', short_fingerprint)
write_doc(record_key, doc)
for field, value in pairs(cjson.decode(audit)) do redis.call('HSET', record_key, field, value) end
redis.call('EXPIRE', record_key, ttl)
redis.call('ZADD', by_time_key, created_at, id)
redis.call('ZREMRANGEBYSCORE', by_time_key, '-inf', created_at - ttl)
redis.call('ZADD', order_key, redis.call('INCR', sequence_key), id)
forget_finished_before(order_key, created_at - ttl)
redis.call('EXPIRE', order_key, ttl)
if first_waiting(order_key) ~= id then
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
