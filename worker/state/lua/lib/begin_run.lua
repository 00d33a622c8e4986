-- A worker takes a request's task message, for one run with a fencing token (begin.lua, and
-- start.lua). Returns {'unknown'}, {'final', status}, {'busy', ms until the call in flight
-- must be over} or {'ok', run token, doc, status, merges, interrupted call's start (Redis ms;
-- '' when none), audit}: `audit` is the JSON of the audit fields the record's hash keeps
-- beside its document (record_codec.AUDIT_HASH_FIELDS; only those set), so the run's record
-- (and the hook it fires) knows who asked. An interrupted call is one that passed the gate and whose outcome nobody
-- stored (its worker died mid-call): `calling_until` is still on the record but past. The
-- fields stay until a run stores an outcome (save.lua), so a run that dies before that leaves
-- the evidence to the next one.
--! include is_final
--! include now
--! include doc

-- The record's audit fields (hash field -> value), those set, as JSON.
local function read_audit(record_key)
  local names = {'o', 'rb', 'f', 'cb', 'ca'}
  local values = redis.call('HMGET', record_key, unpack(names))
  local audit = {}
  for i, name in ipairs(names) do
    if values[i] then audit[name] = values[i] end
  end
  if next(audit) == nil then return '{}' end
  return cjson.encode(audit)
end

local function begin_run(record_key, due_key, dispatched_key, consumed_key, id, lease, carried_dispatch)
  local stored = tonumber(redis.call('HGET', dispatched_key, id) or '-1')
  -- A message pushed by the create script carries no number: the create script kept its own
  -- on the record (`cd`; a re-release since then stored a newer one for its own message).
  -- A record from before `cd` falls back to the stored number.
  local dispatch = stored
  if carried_dispatch ~= '' then
    dispatch = tonumber(carried_dispatch)
  else
    dispatch = tonumber(redis.call('HGET', record_key, 'cd') or stored)
  end
  if dispatch >= 0 then
    if stored == dispatch then redis.call('HDEL', dispatched_key, id) end
    if dispatch > tonumber(redis.call('GET', consumed_key) or '0') then
      redis.call('SET', consumed_key, dispatch)
    end
  end
  local fields = redis.call('HMGET', record_key, 'status', 'merges', 'calling_until', 'call_started_at')
  local status = fields[1]
  if not status then return {'unknown'} end
  if is_final(status) then return {'final', status} end
  local now = now_seconds()
  local calling_until = tonumber(fields[3] or '0')
  if calling_until > now then
    -- A run is calling Tango for it (maybe on a worker that died): that run is responsible
    -- until the call must be over; then the request is released again, not before.
    local score = redis.call('ZSCORE', due_key, id)
    if score == false or tonumber(score) < calling_until then
      redis.call('ZADD', due_key, calling_until, id)
    end
    return {'busy', math.ceil((calling_until - now) * 1000)}
  end
  local token = redis.call('HINCRBY', record_key, 'run', 1)
  -- If this run dies before it saves the request, the scheduler releases it after the lease.
  redis.call('ZADD', due_key, now + lease, id)
  local interrupted = ''
  if fields[3] then interrupted = fields[4] or '' end
  return {'ok', token, read_doc(record_key), status, fields[2] or '0', interrupted, read_audit(record_key)}
end
