-- Store a request that is not final, with its due score and, in the same step, its order's
-- window. Refuses (0) when the request already reached a final status (finished or
-- cancelled), or when a newer run holds the request (fencing).
local record_key = KEYS[1]
local due_key = KEYS[2]
local window_key = KEYS[3]                 -- '' = leave the window alone
local metrics_key = KEYS[4]                -- '' = not counted
local memo_key = KEYS[5]                   -- this call's reply, for a replay (its nonce)
local id = ARGV[1]
local doc = ARGV[2]
local status = ARGV[3]
local due_score = ARGV[4]                  -- '' keeps the request's score
local window_action = ARGV[5]              -- see set_window
local run_token = ARGV[6]                  -- '' = no check
local run_counts = ARGV[7]                 -- JSON {metrics field: amount} the run recorded; '' = none
local not_before = ARGV[8]                 -- the next attempt's time (epoch s); '' = none
local probe_next = ARGV[9]                 -- '1': the next call is a probe
local memo_ttl = ARGV[10]                  -- seconds
--! include is_final
--! include set_window
--! include doc
--! include counts

-- A replay (redis-py sends the script again when its reply was lost) answers the first reply:
-- run again, it would add the run's counts a second time. The memo is the reply alone (0 or
-- 1), never the document, which holds the recipient's contact data.
local memo = redis.call('GET', memo_key)
if memo then return tonumber(memo) end

local function save()
  -- What the run counted (its call, its deferral) is counted even if its write is refused.
  add_counts(metrics_key, run_counts)
  local current = redis.call('HGET', record_key, 'status')
  if not current or is_final(current) then return 0 end
  if run_token ~= '' and redis.call('HGET', record_key, 'run') ~= run_token then return 0 end
  set_window(window_key, id, window_action)
  redis.call('HSET', record_key, 'status', status)
  write_doc(record_key, doc)
  -- What start.lua needs to know without reading the document: kept only while they hold.
  if not_before ~= '' then redis.call('HSET', record_key, 'nb', not_before)
  else redis.call('HDEL', record_key, 'nb') end
  if probe_next ~= '' then redis.call('HSET', record_key, 'pr', '1')
  else redis.call('HDEL', record_key, 'pr') end
  -- The run stores what became of its call (an unresolved one is in the doc from now on).
  redis.call('HDEL', record_key, 'calling_until', 'call_started_at')
  if due_score ~= '' then redis.call('ZADD', due_key, due_score, id) end
  return 1
end

local reply = save()
redis.call('SET', memo_key, reply, 'EX', memo_ttl)
return reply
