-- Writes one shard's part of a pending bulk write (see bulk.rs): refresh tokens and codes,
-- never overwriting one already used, so a repeated or late write changes nothing.
-- KEYS: 1 the shard's marker of the generation, then the records.
-- ARGV: 1 the replay floor (seconds), 2 "1" to set a missing marker (a generation being
-- filled, not yet live), then per record: value ("" = delete), expire-at ("+N": N or the
-- replay floor, whichever is later), the field that is set once the record is used.
-- Returns 0 written; 1 the marker is missing (the shard lost its data): nothing written.
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[2] ~= '1' then return 1 end
  redis.call('SET', KEYS[1], '1')
end
local now = tonumber(redis.call('TIME')[1])
local floor = tonumber(ARGV[1])
for i = 2, #KEYS do
  local j = 3 + (i - 2) * 3
  local value, at, field = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  local keep = false
  if field ~= '' then
    local old = redis.call('GET', KEYS[i])
    if old then
      local ok, stored = pcall(cjson.decode, old)
      keep = ok and type(stored) == 'table' and stored[field] ~= nil and stored[field] ~= cjson.null
    end
  end
  if keep then
    -- already used: the stored record stands
  elseif value == '' then
    redis.call('DEL', KEYS[i])
  elseif at == '0' then
    redis.call('SET', KEYS[i], value)
  else
    local exat
    if string.sub(at, 1, 1) == '+' then
      exat = math.max(tonumber(string.sub(at, 2)), now + floor)
    else
      exat = tonumber(at)
    end
    redis.call('SET', KEYS[i], value, 'EXAT', exat)
  end
end
return 0
