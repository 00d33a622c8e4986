-- Release a lock (the OAuth token fetch's) only if this owner still holds it. Returns 1 when
-- released.
local lock_key = KEYS[1]
local owner = ARGV[1]

if redis.call('GET', lock_key) == owner then return redis.call('DEL', lock_key) end
return 0
