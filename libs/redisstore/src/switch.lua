-- Makes generation ARGV[2] the live one, if it has applied at least as far as the live one
-- on every partition (so switching readers rolls nothing back), and marks it ready.
-- KEYS: 1 pointer key ("P:live"). ARGV: 1 base prefix ("P:"), 2 the new generation, then
-- pairs partition, next offset: what the rebuild applied to it.
-- Returns {0, previous generation or "", 0} switched; {1, partition, offset needed} not yet;
-- {2, partition, 0} the new generation lost what was applied to it (Redis lost data).
local new_prefix = ARGV[1] .. ARGV[2] .. ':'
for i = 3, #ARGV, 2 do
  local held = tonumber(redis.call('HGET', new_prefix .. 'offsets', ARGV[i]) or '0')
  if held < tonumber(ARGV[i + 1]) then return {2, ARGV[i], 0} end
end
local old = redis.call('GET', KEYS[1])
if old and old ~= ARGV[2] then
  local live = redis.call('HGETALL', ARGV[1] .. old .. ':offsets')
  for i = 1, #live, 2 do
    local mine = tonumber(redis.call('HGET', new_prefix .. 'offsets', live[i]) or '0')
    if mine < tonumber(live[i + 1]) then return {1, live[i], live[i + 1]} end
  end
end
local offsets = redis.call('HKEYS', new_prefix .. 'offsets')
for _, p in ipairs(offsets) do redis.call('HSET', new_prefix .. 'complete', p, '1') end
redis.call('SET', new_prefix .. 'ready', '1')
-- Written by this build from its start: its revocation index is whole.
redis.call('SET', new_prefix .. 'index', '1')
redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[1] .. ':fence')
-- Nodes' near-caches drop everything: they held the old generation's records.
redis.call('PUBLISH', KEYS[1] .. ':changes', '*')
return {0, old or '', 0}
