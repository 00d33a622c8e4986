-- Drop the fleet's cached OAuth token, but only if it is still the one Tango rejected: a fleet
-- of workers seeing the same 401 causes a single renewal. Returns 1 when dropped.
local token_key = KEYS[1]
local rejected_token = ARGV[1]

local cached = redis.call('GET', token_key)
if cached and cjson.decode(cached)['access_token'] == rejected_token then
  return redis.call('DEL', token_key)
end
return 0
