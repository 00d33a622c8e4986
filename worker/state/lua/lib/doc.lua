-- A record's document is kept in fields of at most DOC_CHUNK bytes ('d1', 'd2', ...; 'dn'
-- says how many), so every field of a waiting request's hash stays within Redis's
-- hash-max-listpack-value (64 bytes by default) and the hash keeps its compact listpack
-- encoding: a third of the memory of the same hash as a hash table. (A finished record with
-- a long history outgrows it, as it may.) A document stored whole, in 'doc', by an earlier
-- version is still read, and replaced by chunks the first time it is written.
local DOC_CHUNK = 60

local function write_doc(key, doc)
  local before = tonumber(redis.call('HGET', key, 'dn') or '0')
  local count = math.max(1, math.ceil(#doc / DOC_CHUNK))
  local pairs_to_set = {'dn', count}
  for i = 1, count do
    pairs_to_set[#pairs_to_set + 1] = 'd' .. i
    pairs_to_set[#pairs_to_set + 1] = string.sub(doc, (i - 1) * DOC_CHUNK + 1, i * DOC_CHUNK)
    if #pairs_to_set >= 200 then
      redis.call('HSET', key, unpack(pairs_to_set))
      pairs_to_set = {}
    end
  end
  if #pairs_to_set > 0 then redis.call('HSET', key, unpack(pairs_to_set)) end
  for i = count + 1, before do redis.call('HDEL', key, 'd' .. i) end
  if before == 0 then redis.call('HDEL', key, 'doc') end
end

local function read_doc(key)
  local count = tonumber(redis.call('HGET', key, 'dn') or '0')
  if count == 0 then return redis.call('HGET', key, 'doc') end
  local chunks = {}
  for i = 1, count do chunks[i] = redis.call('HGET', key, 'd' .. i) or '' end
  return table.concat(chunks)
end
