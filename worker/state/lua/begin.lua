-- A worker takes a request's task message, for one run with a fencing token
-- (lib/begin_run.lua says what it returns).
local record_key = KEYS[1]
local due_key = KEYS[2]
local dispatched_key = KEYS[3]
local consumed_key = KEYS[4]
local id = ARGV[1]
local lease = tonumber(ARGV[2])            -- seconds
local carried_dispatch = ARGV[3]           -- the message's dispatch number; '' when it has none
--! include begin_run

return begin_run(record_key, due_key, dispatched_key, consumed_key, id, lease, carried_dispatch)
