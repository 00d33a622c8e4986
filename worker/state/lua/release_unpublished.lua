-- The task message of a new request could not be published: make the request due now, so the
-- next scheduler pass releases it (nothing is deleted: someone may already hold its id).
local due_key = KEYS[1]
local dispatched_key = KEYS[2]
local id = ARGV[1]
local dispatch = tonumber(ARGV[2])
--! include now

if tonumber(redis.call('HGET', dispatched_key, id) or '-1') == dispatch then
  redis.call('HDEL', dispatched_key, id)
end
return redis.call('ZADD', due_key, 'XX', now_seconds(), id)
