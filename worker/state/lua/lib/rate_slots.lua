-- The fleet's rate-limit slots (worker/state/gate.py says why they are reserved, not retried
-- for). The limiter key holds the next free slot (GCRA's theoretical arrival time, epoch ms);
-- reservations (RedisKeys.rate_reservations) hold, per request, the slot it was given and
-- comes back for. The sliding window of recent call starts is the hard bound: whatever the
-- slots say, no call starts while `allowed_per_span` calls started in the last `span_ms`.
--
-- A probe takes no place at the back of the queue: it goes at the first moment the sliding
-- window allows and moves every reservation it would share a slot with (and all after them)
-- back by as much, limiter included, so slots stay one interval apart and calls over the
-- limit stay 0. A probe must reach Tango inside the window an ambiguous call may have opened;
-- behind a backlog of reservations it would not (each costs an interval).

local RESERVATION_KEEP_MS = 3600000

local function reserve(reservations_key, id, slot, now)
  redis.call('ZADD', reservations_key, slot, id)
  local last = tonumber(redis.call('ZRANGE', reservations_key, -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIRE', reservations_key, math.max(last - now, 1) + RESERVATION_KEEP_MS)
end

-- Move every reservation from `first_affected` on back so that the first lands at `free_from`
-- (their spacing kept), and the limiter with them.
local function make_room(limiter_key, reservations_key, id, now, slot, interval_ms)
  local affected = redis.call(
    'ZRANGEBYSCORE', reservations_key, '(' .. (slot - interval_ms), '+inf', 'WITHSCORES')
  local shift = 0
  for i = 1, #affected, 2 do
    if affected[i] ~= id then
      shift = math.max(0, slot + interval_ms - tonumber(affected[i + 1]))
      break
    end
  end
  if shift > 0 then
    for i = 1, #affected, 2 do
      if affected[i] ~= id then redis.call('ZINCRBY', reservations_key, shift, affected[i]) end
    end
  end
  local limiter = tonumber(redis.call('GET', limiter_key) or '0') + shift
  limiter = math.max(limiter, slot + interval_ms)
  redis.call('SET', limiter_key, limiter, 'PX', math.max(limiter - now, 1) + 60000)
end

-- Take a slot for a call now: returns 0 (go; the call is entered in the sliding window) or
-- the ms to wait for the slot reserved for `id`.
local function take_rate_slot(
  limiter_key, reservations_key, recent_calls_key, id, now, interval_ms, span_ms,
  allowed_per_span, probe
)
  redis.call('ZREMRANGEBYSCORE', reservations_key, '-inf', now - RESERVATION_KEEP_MS)
  redis.call('ZREMRANGEBYSCORE', recent_calls_key, '-inf', now - span_ms)
  local reserved = tonumber(redis.call('ZSCORE', reservations_key, id) or '-1')
  if reserved > now then return reserved - now end
  local allowed_at = now
  if redis.call('ZCARD', recent_calls_key) >= allowed_per_span then
    local oldest = tonumber(redis.call('ZRANGE', recent_calls_key, 0, 0, 'WITHSCORES')[2])
    allowed_at = oldest + span_ms + 1
  end
  if reserved < 0 then
    if probe then
      make_room(limiter_key, reservations_key, id, now, allowed_at, interval_ms)
    else
      local slot = math.max(tonumber(redis.call('GET', limiter_key) or '0'), now)
      redis.call(
        'SET', limiter_key, slot + interval_ms, 'PX', math.max(slot + interval_ms - now, 1) + 60000)
      allowed_at = math.max(allowed_at, slot)
    end
  end
  if allowed_at > now then
    -- Keep the slot this request already advanced the limiter for: it comes back at
    -- `allowed_at` as the holder of a reservation, instead of taking (and losing) another.
    reserve(reservations_key, id, allowed_at, now)
    return allowed_at - now
  end
  redis.call('ZREM', reservations_key, id)
  redis.call('ZADD', recent_calls_key, now, id .. '@' .. now)
  redis.call('PEXPIRE', recent_calls_key, span_ms + 60000)
  return 0
end
