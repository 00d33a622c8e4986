--! include order_queue

-- Schedule the next request of an order, if it waits for its turn, for when the window ends.
local function promote_next(due_key, order_key, window_key, now_s, margin)
  local next_id = first_waiting(order_key)
  if not next_id then return end
  local score = redis.call('ZSCORE', due_key, next_id)
  if score == false or score == 'inf' or tonumber(score) == math.huge then
    local window_ms = 0
    if window_key ~= '' then window_ms = math.max(redis.call('PTTL', window_key), 0) end
    redis.call('ZADD', due_key, now_s + window_ms / 1000 + margin, next_id)
  end
end
