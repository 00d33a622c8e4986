-- A request whose record has gone (expired, deleted, lost) while it was unfinished: take it
-- off every index, so its order's queue moves on instead of waiting behind it forever.
-- Returns 1 when it was such an orphan, 0 when its record is there.
local record_key = KEYS[1]
local due_key = KEYS[2]
local dispatched_key = KEYS[3]
local unfinished_key = KEYS[4]
local fifo_key = KEYS[5]                   -- '' when the request's order is not known
local pending_key = KEYS[6]
local window_key = KEYS[7]
local id = ARGV[1]
local promote_margin = tonumber(ARGV[2])   -- seconds
--! include now
--! include promote_next

if redis.call('EXISTS', record_key) == 1 then return 0 end
redis.call('ZREM', due_key, id)
redis.call('HDEL', dispatched_key, id)
redis.call('HDEL', unfinished_key, id)
if fifo_key ~= '' then
  local was_head = redis.call('ZRANGE', fifo_key, 0, 0)[1] == id
  redis.call('ZREM', fifo_key, id)
  local pending = redis.call('HGETALL', pending_key)
  for i = 1, #pending, 2 do
    if pending[i + 1] == id then redis.call('HDEL', pending_key, pending[i]) end
  end
  if was_head then promote_next(due_key, fifo_key, window_key, now_seconds(), promote_margin) end
end
return 1
