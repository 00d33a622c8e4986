-- The order's window after a call, in the same step as the record: '' leaves it, 'release'
-- drops it (owner only), a number of ms re-anchors it (owner, or nobody: after a resend the
-- window must exist even if the hold lapsed during a very slow call).
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
