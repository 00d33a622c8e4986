-- Add counts to the fleet's metrics hash (worker/state/metrics.py) in the script's own step.
-- `counts` is a JSON object {field: amount}; '' (or no metrics key) adds nothing.
local function add_counts(metrics_key, counts)
  if metrics_key == '' or counts == '' then return end
  for name, amount in pairs(cjson.decode(counts)) do
    redis.call('HINCRBYFLOAT', metrics_key, name, amount)
  end
end
