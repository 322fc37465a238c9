-- Writes one shard's part of a pending bulk write (see bulk.rs), never replacing a record
-- with one behind it, so a repeated or late write changes nothing.
-- KEYS: 1 the shard's marker of the generation, then the records.
-- ARGV: 1 the replay floor (seconds), 2 "1" to set a missing marker (a generation being
-- filled, not yet live), then per record: value ("" = delete), expire-at ("+N": N or the
-- replay floor, whichever is later), the rule that tells a value behind the stored one:
-- a field name (the stored record has it set and the new one not: a refresh token or code
-- already used), "family" (the stored family is revoked and the new one not, or it lives
-- longer), "" (none).
-- Returns 0 written; 1 the marker is missing (the shard lost its data): nothing written.
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[2] ~= '1' then return 1 end
  redis.call('SET', KEYS[1], '1')
end
local now = tonumber(redis.call('TIME')[1])
local floor = tonumber(ARGV[1])
-- Values are serde_json's compact JSON: fields are read with plain string searches, far
-- cheaper than decoding every record.
local function used(json, field)
  return string.find(json, '"' .. field .. '":"', 1, true) ~= nil
end
local function revoked(json)
  return string.find(json, '"revoked":true', 1, true) ~= nil
end
local function lives_until(json)
  return tonumber(string.match(json, '"until":(%-?%d+)')) or 0
end
for i = 2, #KEYS do
  local j = 3 + (i - 2) * 3
  local value, at, rule = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  local keep = false
  if rule ~= '' then
    local old = redis.call('GET', KEYS[i])
    if old then
      if rule == 'family' then
        keep = (revoked(old) and not revoked(value)) or lives_until(old) > lives_until(value)
      else
        keep = used(old, rule) and not used(value, rule)
      end
    end
  end
  if keep then
    -- the stored record is ahead: it stands
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
