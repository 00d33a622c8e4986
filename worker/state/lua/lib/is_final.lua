-- Is `status` one a request never leaves? (ResendStatus.is_final in worker/state/records.py;
-- tests/unit/test_lua_scripts.py keeps the two the same.)
local FINAL_STATUSES = {sent = true, failed = true, cancelled = true}
local function is_final(status)
  return FINAL_STATUSES[status] == true
end
