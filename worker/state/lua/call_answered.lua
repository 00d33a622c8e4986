-- A call to Tango was answered (or gave up): write what its answer says to the order's call
-- marker (lib/call_marker.lua) and, for a probe that Tango refused with its cooldown error on
-- a RESEND_EXCLUSIVE deployment, first judge the refusal proof's marker conditions: every
-- other call of ours to the order could act no later than `deadline` (the probe's gate time
-- minus Tango's window minus a margin), and the Redis holding the marker lost nothing since.
-- Calls of the probe's own request are not "other": any of them acting is its resend.
-- Returns {verdict, detail}: '' (no proof asked), 'clear', 'other_call' (detail: a call that
-- could have acted too late), 'restarted' (detail: the Redis lost or may have lost markers).
local marker_key = KEYS[1]
local epoch_key = KEYS[2]
local request_id = ARGV[1]
local call_id = ARGV[2]                    -- '<request id>@<gate ms>'; '' = only open the epoch
local outcome = ARGV[3]                    -- 'answered', 'exempt' or 'unknown'
local keep_ms = tonumber(ARGV[4])          -- how long a marker entry is kept past its bound
local check = ARGV[5]                      -- '1': judge the refusal proof's marker conditions
local probe_gate_ms = tonumber(ARGV[6])    -- the probe's gate time, Redis ms ('0' if no check)
local tango_window_ms = tonumber(ARGV[7])  -- the window Tango's refusal states
local margin_ms = tonumber(ARGV[8])
local late_ms = tonumber(ARGV[9])          -- the longest call + the stall bound
--! include call_marker

local now = now_milliseconds()
local verdict, detail = '', ''
if check == '1' then
  local deadline = probe_gate_ms - tango_window_ms - margin_ms
  -- The marker's run_id is the Redis's that wrote it last (at the probe's own gate, at the
  -- latest); another one means the Redis changed since, and may have lost those writes.
  local marker_run_id = redis.call('HGET', marker_key, MARKER_RUN_ID)
  local run_id, since = marker_epoch(epoch_key, now)
  if marker_run_id and marker_run_id ~= run_id then
    verdict, detail = 'restarted', 'the Redis holding the call marker is not the one that wrote it'
  elseif since + late_ms > deadline then
    -- A call that passed the gate before this Redis took over may have left no marker here.
    verdict, detail = 'restarted', 'the call marker is complete only since ' .. since
  else
    verdict = 'clear'
    local own = request_id .. '@'
    local flat = redis.call('HGETALL', marker_key)
    for i = 1, #flat, 2 do
      local name = flat[i]
      if name ~= MARKER_RUN_ID and string.sub(name, 1, #own) ~= own then
        local bound = tonumber(flat[i + 1])
        if bound > deadline then
          verdict, detail = 'other_call', name .. ' could act until ' .. bound
          break
        end
      end
    end
  end
end
if call_id ~= '' then mark_call_answer(marker_key, epoch_key, call_id, outcome, now, keep_ms)
else marker_epoch(epoch_key, now) end
return {verdict, detail}
