-- Store the final record, take it off its order's queue, owe its callback, count its outcome
-- and schedule the next request of the order for when the window ends: one atomic step.
-- Returns 'done', 'unknown', 'in_flight', 'stale' (a newer run holds the request) or the
-- final status the request already had; 'done' again to the run that stored it, asking again
-- (the WAIT behind its first try fell short: it is written again, for a WAIT to cover).
local record_key = KEYS[1]
local due_key = KEYS[2]
local order_key = KEYS[3]                  -- the order's requests (lib/order_queue.lua)
local legacy_pending_key = KEYS[4]         -- see create.lua
local window_key = KEYS[5]
local outbox_key = KEYS[6]                 -- '' = no callbacks
local dispatched_key = KEYS[7]
local legacy_unfinished_key = KEYS[8]      -- id -> order, as earlier versions kept it
local metrics_key = KEYS[9]                -- '' = not counted
local id = ARGV[1]
local doc = ARGV[2]
local status = ARGV[3]
local fingerprint = ARGV[4]
local promote_margin = tonumber(ARGV[5])   -- seconds
local only_if_cancellable = ARGV[6]        -- '1': refuse while a call is in flight
local window_action = ARGV[7]              -- see set_window
local run_token = ARGV[8]                  -- '' = no check
local metric_counts = ARGV[9]              -- JSON {metrics field: amount}; '' = none
local created_at = tonumber(ARGV[10])      -- the request's, epoch seconds
local run_counts = ARGV[11]                -- JSON {metrics field: amount} the run recorded; '' = none
local answer_in_hand = ARGV[12]            -- '1': the run holds Tango's 201 (see below)
--! include is_final
--! include set_window
--! include now
--! include order_queue
--! include promote_next
--! include doc
--! include counts

-- What the run counted (its call) is counted even if its outcome is refused.
add_counts(metrics_key, run_counts)
local fields = redis.call('HMGET', record_key, 'status', 'run', 'calling_until')
local current = fields[1]
if not current then return 'unknown' end
if is_final(current) then
  if run_token ~= '' and fields[2] == run_token and current == status then
    redis.call('HSET', record_key, 'status', current)
    return 'done'
  end
  return current
end
if run_token ~= '' and fields[2] ~= run_token then
  -- An answer in hand is a fact: a run holding Tango's 201 stores it even after a newer run
  -- took the request (Redis lost or refused its writes meanwhile, and released it again).
  -- It takes the request over, so the newer run's writes are refused from here on.
  if answer_in_hand == '' then return 'stale' end
  redis.call('HSET', record_key, 'run', run_token)
end
local now_s = now_seconds()
if only_if_cancellable ~= '' and tonumber(fields[3] or '0') > now_s then return 'in_flight' end
set_window(window_key, id, window_action)
redis.call('HSET', record_key, 'status', status)
write_doc(record_key, doc)
redis.call('HDEL', record_key, 'calling_until')
redis.call('ZREM', due_key, id)
mark_finished(order_key, id, created_at)
redis.call('HDEL', dispatched_key, id)
redis.call('HDEL', legacy_unfinished_key, id)
if redis.call('HGET', legacy_pending_key, fingerprint) == id then
  redis.call('HDEL', legacy_pending_key, fingerprint)
end
-- The outcome callback is owed from this moment: recorded with the outcome, never without it.
if outbox_key ~= '' then redis.call('ZADD', outbox_key, now_s, id) end
-- Counted with the outcome, so a worker that dies right after storing it loses no count.
add_counts(metrics_key, metric_counts)
promote_next(due_key, order_key, window_key, now_s, promote_margin)
return 'done'
