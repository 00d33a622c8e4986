-- A request whose record has gone (expired, deleted, lost) while it was unfinished: take it
-- off every index, so its order's queue moves on instead of waiting behind it forever.
-- Returns 1 when it was such an orphan, 0 when its record is there.
local record_key = KEYS[1]
local due_key = KEYS[2]
local dispatched_key = KEYS[3]
local legacy_unfinished_key = KEYS[4]      -- id -> order, as earlier versions kept it
local order_key = KEYS[5]                  -- '' when the request's order is not known
local legacy_pending_key = KEYS[6]         -- see create.lua
local window_key = KEYS[7]
local id = ARGV[1]
local promote_margin = tonumber(ARGV[2])   -- seconds
--! include now
--! include order_queue
--! include promote_next

if redis.call('EXISTS', record_key) == 1 then return 0 end
redis.call('ZREM', due_key, id)
redis.call('HDEL', dispatched_key, id)
redis.call('HDEL', legacy_unfinished_key, id)
if order_key ~= '' then
  local was_head = first_waiting(order_key) == id
  redis.call('ZREM', order_key, id)
  local pending = redis.call('HGETALL', legacy_pending_key)
  for i = 1, #pending, 2 do
    if pending[i + 1] == id then redis.call('HDEL', legacy_pending_key, pending[i]) end
  end
  if was_head then promote_next(due_key, order_key, window_key, now_seconds(), promote_margin) end
end
return 1
