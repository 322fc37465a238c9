-- Writes what the projector computed for one batch of one partition, and the partition's
-- next offset, atomically, if nothing moved since the projector read.
-- KEYS: 1 pointer key ("P:live"; it also routes the script to the projection's slot).
-- ARGV: 1 generation the writer expects to be live ("" for a pinned rebuild generation),
-- 2 generation prefix ("P:G:"), 3 partition, 4 expected next offset, 5 new next offset,
-- 6 the replay floor (seconds), 7 the batch's pending bulk write ("" none; see bulk.rs),
-- then groups of 4: key, value ("" = delete), expire-at seconds
-- ("0" = never, "+N" = N or the replay floor, whichever is later), kind ("c" a client, "r" a
-- record the revocation check reads, "" other).
-- Returns {0, next} written; {1, next} the partition is elsewhere (re-read); {2, 0} the
-- live generation changed (re-resolve); {3, 0} the live generation is fenced for a moment
-- while a rebuild switches (wait and retry).
local expected_generation = ARGV[1]
if expected_generation ~= '' then
  if redis.call('GET', KEYS[1]) ~= expected_generation then return {2, 0} end
  if redis.call('GET', KEYS[1] .. ':fence') == expected_generation then return {3, 0} end
end
local offsets = ARGV[2] .. 'offsets'
local next = tonumber(redis.call('HGET', offsets, ARGV[3]) or '0')
if next ~= tonumber(ARGV[4]) then return {1, next} end
-- Records that later events of the log refer to (refresh tokens, codes, families) live at
-- least the replay floor past their writing, whatever their own expiry: a replay writes them
-- long after they expired and must still find them when the rotation or redemption that
-- follows them in the log is applied (else a replayed reuse would go undetected).
local REPLAY_FLOOR = tonumber(ARGV[6])
local time = redis.call('TIME')
local now = tonumber(time[1])
-- Microseconds, as text (a Lua number that large would print in exponent form).
local now_us = time[1] .. string.rep('0', 6 - #time[2]) .. time[2]
local clients = ARGV[2] .. 'clients'
local client_prefix = ARGV[2] .. 'client:'
-- The records the revocation check reads, by expiry: what a node's revocation mirror loads.
local index = ARGV[2] .. 'revocations'
-- Nodes' near-caches follow the live generation's changes (a rebuild's generation is not
-- live: its switch tells them to reload).
local live = expected_generation ~= ''
local channel = KEYS[1] .. ':changes'
for i = 8, #ARGV, 4 do
  local key, value, at, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local exat = 0
  if value == '' then
    redis.call('DEL', key)
  elseif at == '0' then
    redis.call('SET', key, value)
  else
    if string.sub(at, 1, 1) == '+' then
      exat = math.max(tonumber(string.sub(at, 2)), now + REPLAY_FLOOR)
    else
      exat = tonumber(at)
    end
    redis.call('SET', key, value, 'EXAT', exat)
  end
  if kind == 'c' then
    local id = string.sub(key, #client_prefix + 1)
    redis.call('SADD', clients, id)
    if live then redis.call('PUBLISH', channel, 'c ' .. id) end
  elseif kind == 'r' and value ~= '' then
    local name = string.sub(key, #ARGV[2] + 1)
    redis.call('ZADD', index, exat == 0 and '+inf' or exat, name)
    if live then
      redis.call('PUBLISH', channel, 'r ' .. exat .. ' ' .. now_us .. ' ' .. value .. ' ' .. name)
    end
  end
end
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now)
if ARGV[7] ~= '' then
  redis.call('HSET', ARGV[2] .. 'pending', ARGV[3], ARGV[7])
  -- Its first offset alone, for readers that only ask whether it is done.
  redis.call('HSET', ARGV[2] .. 'pending_from', ARGV[3], ARGV[4])
end
redis.call('HSET', offsets, ARGV[3], ARGV[5])
return {0, tonumber(ARGV[5])}
