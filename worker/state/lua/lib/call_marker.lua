-- The order's call marker (RedisKeys.call_marker): for every call of ours to the order, the
-- latest moment (Redis ms) it could have acted inside Tango. Written at the gate (the call
-- could act until its start + the longest call + the stall bound) and lowered at its answer
-- (Tango answered: it acted, if at all, before that); dropped only for a call that provably
-- never reached Tango. Never released by a cancel, a failure or an error answer: the refusal
-- proof (call_answered.lua) reads it to know that no other call of ours can explain a refusal.
-- The epoch (RedisKeys.call_marker_epoch) says since when this Redis holds every marker: a
-- restarted or failed-over Redis (another run_id) may have lost the latest writes.
--! include now

local MARKER_RUN_ID = 'run_id'
-- The epoch outlives any quiet spell of the fleet (each gate renews it): an epoch that expired
-- starts again, and the refusal proof waits a stall bound after that.
local EPOCH_KEEP_MS = 30 * 24 * 3600 * 1000

local function redis_run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
end

-- When this Redis may have started holding data another one wrote last (Redis ms): a process
-- that restarted (from its files) lost at most what came before its start, so calls that
-- passed the gate then could act until its start + the longest call + the stall bound. A
-- replica promoted to primary may have missed writes made up to its promotion, which INFO
-- does not date: now. (`second_repl_offset` is -1 unless it was promoted.)
local function took_over_at(now_ms)
  local promoted = tonumber(string.match(redis.call('INFO', 'replication'), 'second_repl_offset:(%-?%d+)'))
  if promoted ~= nil and promoted >= 0 then return now_ms end
  local uptime = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
  if uptime == nil then return now_ms end
  return now_ms - uptime * 1000
end

-- This Redis's run_id and since when it has held every marker (Redis ms). A Redis that did
-- not write the epoch (restarted, failed over, or the epoch lost with the data) starts it when
-- it took over.
local function marker_epoch(epoch_key, now_ms)
  local run_id = redis_run_id()
  local stored = redis.call('HMGET', epoch_key, 'run_id', 'since')
  local since = tonumber(stored[2] or '')
  if stored[1] ~= run_id or since == nil then
    since = took_over_at(now_ms)
    redis.call('HSET', epoch_key, 'run_id', run_id, 'since', since)
  end
  redis.call('PEXPIRE', epoch_key, EPOCH_KEEP_MS)
  return run_id, since
end

-- Forget calls that could act no later than `keep_ms` ago, and keep the key as long as its
-- latest call matters.
local function tidy_marker(marker_key, now_ms, keep_ms)
  local latest = now_ms
  local flat = redis.call('HGETALL', marker_key)
  for i = 1, #flat, 2 do
    if flat[i] ~= MARKER_RUN_ID then
      local bound = tonumber(flat[i + 1])
      if bound < now_ms - keep_ms then redis.call('HDEL', marker_key, flat[i])
      elseif bound > latest then latest = bound end
    end
  end
  redis.call('PEXPIRE', marker_key, latest - now_ms + keep_ms)
end

-- A call passed the gate: it could act until `bound_ms`.
local function mark_call_at_gate(marker_key, epoch_key, call_id, bound_ms, now_ms, keep_ms)
  if marker_key == '' then return end
  local run_id = marker_epoch(epoch_key, now_ms)
  redis.call('HSET', marker_key, call_id, bound_ms, MARKER_RUN_ID, run_id)
  tidy_marker(marker_key, now_ms, keep_ms)
end

-- A call's answer: 'answered' (Tango or a gateway answered, and nothing of it can act later:
-- the bound comes down to now), 'exempt' (it provably never reached Tango: the call leaves
-- the marker) or 'unknown' (it may still act: the gate's bound stays).
local function mark_call_answer(marker_key, epoch_key, call_id, outcome, now_ms, keep_ms)
  local run_id = marker_epoch(epoch_key, now_ms)
  local bound = tonumber(redis.call('HGET', marker_key, call_id) or '')
  if bound ~= nil then
    if outcome == 'exempt' then redis.call('HDEL', marker_key, call_id)
    elseif outcome == 'answered' and now_ms < bound then
      redis.call('HSET', marker_key, call_id, now_ms)
    end
  end
  if redis.call('HEXISTS', marker_key, MARKER_RUN_ID) == 1 then
    redis.call('HSET', marker_key, MARKER_RUN_ID, run_id)
  end
  return run_id
end
