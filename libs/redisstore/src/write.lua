-- Writes what the projector computed for one batch of one partition, and the partition's
-- next offset, atomically, if nothing moved since the projector read.
-- ARGV: 1 pointer key ("P:active"), 2 generation the writer expects to be live ("" for a
-- pinned rebuild generation), 3 generation prefix ("P:G:"), 4 partition, 5 expected next
-- offset, 6 new next offset, then groups of 3: key, value ("" = delete), expire-at seconds
-- ("0" = never).
-- Returns {0, next} written; {1, next} the partition is elsewhere (re-read); {2, 0} the
-- live generation changed (re-resolve); {3, 0} the live generation is fenced for a moment
-- while a rebuild switches (wait and retry).
local expected_generation = ARGV[2]
if expected_generation ~= '' then
  if redis.call('GET', ARGV[1]) ~= expected_generation then return {2, 0} end
  if redis.call('GET', ARGV[1] .. ':fence') == expected_generation then return {3, 0} end
end
local offsets = ARGV[3] .. 'offsets'
local next = tonumber(redis.call('HGET', offsets, ARGV[4]) or '0')
if next ~= tonumber(ARGV[5]) then return {1, next} end
-- Records that later events of the log refer to (refresh tokens, codes, families) live at
-- least a day past their writing, whatever their own expiry: a replay writes them long after
-- they expired and must still find them when the rotation or redemption that follows them in
-- the log is applied (else a replayed reuse would go undetected).
local REPLAY_FLOOR = 86400
local now = tonumber(redis.call('TIME')[1])
local clients = ARGV[3] .. 'clients'
local client_prefix = ARGV[3] .. 'client:'
for i = 7, #ARGV, 3 do
  local key, value, at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if value == '' then
    redis.call('DEL', key)
  elseif at == '0' then
    redis.call('SET', key, value)
  elseif string.sub(at, 1, 1) == '+' then
    redis.call('SET', key, value, 'EXAT', math.max(tonumber(string.sub(at, 2)), now + REPLAY_FLOOR))
  else
    redis.call('SET', key, value, 'EXAT', at)
  end
  if string.sub(key, 1, #client_prefix) == client_prefix then
    local id = string.sub(key, #client_prefix + 1)
    redis.call('SADD', clients, id)
    -- Nodes' client caches drop it (a rebuild's generation is not live: its switch flushes).
    if expected_generation ~= '' then redis.call('PUBLISH', ARGV[1] .. ':changes', id) end
  end
end
redis.call('HSET', offsets, ARGV[4], ARGV[6])
return {0, tonumber(ARGV[6])}
