-- Applies one event to the projection and records its offset, atomically.
-- ARGV: 1 generation prefix ("P:g0:"), 2 partition, 3 offset, 4 event kind ("" = no effect),
--       5 payload JSON.
-- Returns {outcome, next}: 0 applied, 1 duplicate, 2 gap (next = the offset expected).
local p = ARGV[1]
local partition = ARGV[2]
local offset = tonumber(ARGV[3])
local next = tonumber(redis.call('HGET', p .. 'offsets', partition) or '0')
if offset < next then return {1, next} end
if offset > next then return {2, next} end
redis.call('HSET', p .. 'offsets', partition, string.format('%d', offset + 1))
local kind = ARGV[4]
if kind == '' then return {0, offset + 1} end
local e = cjson.decode(ARGV[5])

local function int(x) return string.format('%d', x) end
local function present(x) return x ~= nil and x ~= cjson.null end

-- Extends a key's expiry to at least `at` (seconds since the epoch).
local function keep_until(key, at)
  if redis.call('EXPIRETIME', key) < at then redis.call('EXPIREAT', key, int(at)) end
end

local function revoke_family(fid)
  local fam = p .. 'fam:' .. fid
  if redis.call('EXISTS', fam) == 0 then return end
  redis.call('HSET', fam, 'revoked', '1')
  for _, jti in ipairs(redis.call('SMEMBERS', p .. 'famj:' .. fid)) do
    local tok = p .. 'tok:' .. jti
    local exp = redis.call('HGET', tok, 'exp')
    if exp then
      redis.call('DEL', tok)
      redis.call('SET', p .. 'rev:' .. jti, '1')
      redis.call('EXPIREAT', p .. 'rev:' .. jti, exp)
    end
  end
end

local function raise_watermark(key, ms)
  local cur = redis.call('GET', key)
  if not cur or tonumber(cur) < ms then redis.call('SET', key, int(ms)) end
end

local function revoke_indexed(index_key)
  for _, fid in ipairs(redis.call('SMEMBERS', index_key)) do revoke_family(fid) end
end

local function revoke_subject(sub, ms)
  raise_watermark(p .. 'wm:sub:' .. sub, ms)
  revoke_indexed(p .. 'subfam:' .. sub)
end

local function revoke_client(client_id, ms)
  raise_watermark(p .. 'wm:cli:' .. client_id, ms)
  revoke_indexed(p .. 'clifam:' .. client_id)
end

-- Records the first use of `key` (by `jti`) in `field`; true when another jti used it first.
local function replayed(key, field, jti)
  if redis.call('EXISTS', key) == 0 then return false end
  local by = redis.call('HGET', key, field)
  if not by then
    redis.call('HSET', key, field, jti)
    return false
  end
  return by ~= jti
end

local function issue()
  local fid = e.family_id
  local fam = p .. 'fam:' .. fid
  redis.call('HSET', fam, 'sub', e.sub, 'client_id', e.client_id)
  redis.call('HSETNX', fam, 'revoked', '0')
  redis.call('SADD', p .. 'famj:' .. fid, e.jti)
  local until_ = e.exp
  if present(e.refresh) then
    local r = e.refresh
    local rt = p .. 'rt:' .. r.digest
    redis.call('SADD', p .. 'famr:' .. fid, r.digest)
    redis.call('DEL', rt)
    redis.call('HSET', rt, 'family_id', fid, 'sub', e.sub, 'client_id', e.client_id,
      'scope', e.scope, 'aud', table.concat(e.aud, ' '), 'iat', int(e.iat), 'exp', int(r.exp))
    redis.call('EXPIREAT', rt, int(r.exp))
    if r.exp > until_ then until_ = r.exp end
  end
  redis.call('SADD', p .. 'subfam:' .. e.sub, fid)
  redis.call('SADD', p .. 'clifam:' .. e.client_id, fid)
  local tok = p .. 'tok:' .. e.jti
  redis.call('HSET', tok, 'sub', e.sub, 'client_id', e.client_id, 'family_id', fid,
    'iat', int(e.iat), 'exp', int(e.exp))
  redis.call('EXPIREAT', tok, int(e.exp))
  for _, k in ipairs({fam, p .. 'famj:' .. fid, p .. 'famr:' .. fid,
                      p .. 'subfam:' .. e.sub, p .. 'clifam:' .. e.client_id}) do
    if redis.call('EXISTS', k) == 1 then keep_until(k, until_) end
  end
  -- The first rotation of a refresh token, or redemption of a code, wins; a second,
  -- different one is a replay, and the family dies.
  local reuse = false
  if present(e.rotated_from) and replayed(p .. 'rt:' .. e.rotated_from, 'used_by', e.jti) then
    reuse = true
  end
  if present(e.from_code) and replayed(p .. 'code:' .. e.from_code, 'redeemed_by', e.jti) then
    reuse = true
  end
  if reuse or redis.call('HGET', fam, 'revoked') == '1' then revoke_family(fid) end
end

if kind == 'TokenIssued' then
  issue()
elseif kind == 'AuthorizationCodeIssued' then
  local code = p .. 'code:' .. e.code_digest
  redis.call('DEL', code)
  redis.call('HSET', code, 'client_id', e.client_id, 'sub', e.sub, 'redirect_uri', e.redirect_uri,
    'scope', e.scope, 'aud', table.concat(e.aud, ' '), 'code_challenge', e.code_challenge,
    'exp', int(e.exp), 'family_id', e.family_id)
  redis.call('EXPIREAT', code, int(e.exp))
elseif kind == 'TokenRevoked' then
  redis.call('DEL', p .. 'tok:' .. e.jti)
  redis.call('SET', p .. 'rev:' .. e.jti, '1')
  redis.call('EXPIREAT', p .. 'rev:' .. e.jti, int(e.exp))
elseif kind == 'TokenFamilyRevoked' then
  revoke_family(e.family_id)
elseif kind == 'SubjectRevoked' then
  revoke_subject(e.sub, e.revoked_before_ms)
elseif kind == 'ClientRevoked' then
  revoke_client(e.client_id, e.revoked_before_ms)
elseif kind == 'ClientRegistered' then
  redis.call('HSET', p .. 'client:' .. e.client_id, 'json', ARGV[5], 'disabled', '0')
  redis.call('SADD', p .. 'clients', e.client_id)
elseif kind == 'ClientDisabled' then
  local key = p .. 'client:' .. e.client_id
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'disabled', '1') end
  revoke_client(e.client_id, e.revoked_before_ms)
elseif kind == 'UserCreated' then
  redis.call('HSET', p .. 'user:' .. e.username, 'password_hash', e.password_hash, 'disabled', '0')
elseif kind == 'UserDisabled' then
  local key = p .. 'user:' .. e.username
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'disabled', '1') end
  revoke_subject(e.username, e.revoked_before_ms)
end
return {0, offset + 1}
