-- Settle one claimed callback entry after a delivery attempt.
-- Returns {outcome, attempts, delay (s)}: outcome 'delivered', 'gone', 'retrying',
-- 'abandoned', 'duplicate' (a success for an entry no longer owed: delivered, abandoned or
-- gone already) or 'stale' (a failure after a newer claim took the entry, or after it was
-- settled: the newer delivery decides, and nothing changes), or 'unconfirmed' (the request's
-- final status is not yet on REDIS_WAIT_REPLICAS replicas: nothing was sent, and the entry is
-- due again in a second, no attempt counted).
local outbox_key = KEYS[1]
local claims_key = KEYS[2]
local attempts_key = KEYS[3]
local id = ARGV[1]
local claim_token = ARGV[2]
local result = ARGV[3]                     -- 'delivered', 'failed', 'gone' or 'unconfirmed'
local max_attempts = tonumber(ARGV[4])
local backoff_base = tonumber(ARGV[5])     -- seconds
local backoff_max = tonumber(ARGV[6])      -- seconds
--! include now

if not redis.call('ZSCORE', outbox_key, id) then
  if result == 'delivered' then return {'duplicate', 0, '0'} end
  return {'stale', 0, '0'}
end
local function remove()
  redis.call('ZREM', outbox_key, id)
  redis.call('HDEL', claims_key, id)
  redis.call('HDEL', attempts_key, id)
end
if result == 'delivered' or result == 'gone' then
  remove()
  return {result, 0, '0'}
end
if redis.call('HGET', claims_key, id) ~= claim_token then return {'stale', 0, '0'} end
if result == 'unconfirmed' then
  redis.call('ZADD', outbox_key, now_seconds() + 1, id)
  return {'unconfirmed', tonumber(redis.call('HGET', attempts_key, id) or '0'), '1'}
end
local attempts = redis.call('HINCRBY', attempts_key, id, 1)
if attempts >= max_attempts then
  remove()
  return {'abandoned', attempts, '0'}
end
local delay = math.min(backoff_max, backoff_base * 2 ^ (attempts - 1))
redis.call('ZADD', outbox_key, now_seconds() + delay, id)
return {'retrying', attempts, tostring(delay)}
