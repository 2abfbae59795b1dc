"""Lua scripts of the Redis backend (run with :class:`pygw.redis_client.LuaScript`).

Every script's KEYS share one hash slot in the cluster layout (see ``_layout``). On one Redis
some scripts also maintain an index in another key derived from a stored value (a session's
owner, a user's sessions): they get that key's prefix in ARGV. On a cluster the prefix is ''
and the script returns what the caller must still write in the other slot instead.
"""

from __future__ import annotations

from pygw.redis_client import LuaScript

# A minimal JSON object splitter. The stored session JSON is merged by text: every value keeps
# its raw text, so arrays (``"conversation": []``), big integers, floats and key order survive
# untouched. Redis' cjson would turn ``[]`` into ``{}`` and round numbers to 14 digits.
# Keys are compared decoded (cjson), so ``"caf\u00e9"`` written by Python's json matches ``café``.
_JSON_SPLICE = r"""
local function skip_ws(s, i)
  return (string.find(s, '[^ \t\r\n]', i)) or (#s + 1)
end

local function string_end(s, i)
  local j = i + 1
  while true do
    local p = string.find(s, '["\\]', j)
    if not p then return nil end
    if string.sub(s, p, p) == '"' then return p end
    j = p + 2
  end
end

local function value_end(s, i)
  local c = string.sub(s, i, i)
  if c == '"' then return string_end(s, i) end
  if c == '{' or c == '[' then
    local depth = 0
    local j = i
    while true do
      local p = string.find(s, '[{}%[%]"]', j)
      if not p then return nil end
      local ch = string.sub(s, p, p)
      if ch == '"' then
        p = string_end(s, p)
        if not p then return nil end
      elseif ch == '{' or ch == '[' then
        depth = depth + 1
      else
        depth = depth - 1
        if depth == 0 then return p end
      end
      j = p + 1
    end
  end
  local p = string.find(s, '[,}%]%s]', i)
  if p == i or i > #s then return nil end
  return (p or (#s + 1)) - 1
end

-- {{decoded_key, raw_key, raw_value}, ...} in document order; nil if s is not a JSON object.
local function split_object(s)
  local i = skip_ws(s, 1)
  if string.sub(s, i, i) ~= '{' then return nil end
  local out = {}
  i = skip_ws(s, i + 1)
  if string.sub(s, i, i) == '}' then return out end
  while true do
    if string.sub(s, i, i) ~= '"' then return nil end
    local ke = string_end(s, i)
    if not ke then return nil end
    local raw_key = string.sub(s, i, ke)
    i = skip_ws(s, ke + 1)
    if string.sub(s, i, i) ~= ':' then return nil end
    i = skip_ws(s, i + 1)
    local ve = value_end(s, i)
    if not ve then return nil end
    out[#out + 1] = {cjson.decode(raw_key), raw_key, string.sub(s, i, ve)}
    i = skip_ws(s, ve + 1)
    local c = string.sub(s, i, i)
    if c == '}' then return out end
    if c ~= ',' then return nil end
    i = skip_ws(s, i + 1)
  end
end

local function get(obj, key)
  for _, e in ipairs(obj) do
    if e[1] == key then return e[3] end
  end
  return nil
end

local function put(obj, key, raw_key, raw_value)
  for _, e in ipairs(obj) do
    if e[1] == key then
      e[3] = raw_value
      return
    end
  end
  obj[#obj + 1] = {key, raw_key, raw_value}
end

local function join(obj)
  local parts = {}
  for n, e in ipairs(obj) do parts[n] = e[2] .. ':' .. e[3] end
  return '{' .. table.concat(parts, ',') .. '}'
end
"""

MERGE_SESSION = LuaScript(
    "merge_session",
    _JSON_SPLICE
    + r"""
-- KEYS: sessions:{sid}, expiry index
-- ARGV: ttl_ms, expiry score, sid, max session bytes (0 = no limit), raw chat_id JSON
--       ('' = keep), raw last_access JSON ('' = keep), then (key, raw key JSON, raw value JSON)
--       triples shallow-merged into data.
-- Returns 1 merged, 0 session gone (never resurrected), -1 stored value is not a JSON object,
-- -2 the merged session would be larger than the limit and than it is now (nothing written).
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, doc = pcall(split_object, cur)
if not ok or not doc then return -1 end
if ARGV[5] ~= '' then put(doc, 'chat_id', '"chat_id"', ARGV[5]) end
if ARGV[6] ~= '' then put(doc, 'last_access', '"last_access"', ARGV[6]) end
if #ARGV > 6 then
  local data = nil
  local data_raw = get(doc, 'data')
  if data_raw then
    local ok2, parsed = pcall(split_object, data_raw)
    if ok2 then data = parsed end
  end
  data = data or {}
  for i = 7, #ARGV, 3 do put(data, ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
  put(doc, 'data', '"data"', join(data))
end
local new = join(doc)
local max = tonumber(ARGV[4])
if max > 0 and #new > max and #new > #cur then return -2 end
redis.call('SET', KEYS[1], new, 'PX', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
""",
)

GET_SESSION = LuaScript(
    "get_session",
    r"""
-- KEYS: sessions:{sid}, expiry index, owner hash
-- ARGV: ttl_ms, expiry score, sid, user-sessions key prefix ('' = leave it to the caller), now
-- Reads the session and refreshes its TTL. A session pygw has never indexed (written by the
-- original gateway, or copied by a migration) is adopted into the indexes here.
-- Returns false, or {value, owner the caller must index ('' = nothing to do)}.
local v = redis.call('GETEX', KEYS[1], 'PX', ARGV[1])
if not v then return false end
local adopt = ''
if redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) == 1 then
  local ok, doc = pcall(cjson.decode, v)
  if ok and type(doc) == 'table' and type(doc.user_id) == 'string' then
    redis.call('HSET', KEYS[3], ARGV[3], doc.user_id)
    if ARGV[4] ~= '' then
      redis.call('ZADD', ARGV[4] .. doc.user_id, 'NX', ARGV[5], ARGV[3])
    else
      adopt = doc.user_id
    end
  end
end
return {v, adopt}
""",
)

DELETE_SESSION = LuaScript(
    "delete_session",
    r"""
-- KEYS: sessions:{sid}, expiry index, owner hash
-- ARGV: sid, user-sessions key prefix ('' = leave the owner's index to the caller)
-- Returns {keys deleted, owner ('' if unknown)}.
local owner = redis.call('HGET', KEYS[3], ARGV[1])
if not owner then
  local v = redis.call('GET', KEYS[1])
  if v then
    local ok, doc = pcall(cjson.decode, v)
    if ok and type(doc) == 'table' and type(doc.user_id) == 'string' then owner = doc.user_id end
  end
end
if owner and ARGV[2] ~= '' then redis.call('ZREM', ARGV[2] .. owner, ARGV[1]) end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {redis.call('DEL', KEYS[1]), owner or ''}
""",
)

CLEANUP_SESSIONS = LuaScript(
    "cleanup_sessions",
    r"""
-- KEYS: expiry index, owner hash
-- ARGV: now, batch limit, user-sessions key prefix ('' = leave it to the caller),
--       prefix of this index's session keys
-- Returns {dropped, scanned, {sid, owner, ...} of the dropped sessions the caller must still
-- remove from their owner's index}. Entries whose key is still alive (TTL refreshed by another
-- writer) are re-scored instead of dropped.
local sids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local dropped = 0
local left = {}
for _, sid in ipairs(sids) do
  local pttl = redis.call('PTTL', ARGV[4] .. sid)
  if pttl == -2 then
    local owner = redis.call('HGET', KEYS[2], sid)
    if owner then
      if ARGV[3] ~= '' then
        redis.call('ZREM', ARGV[3] .. owner, sid)
      else
        left[#left + 1] = sid
        left[#left + 1] = owner
      end
    end
    redis.call('HDEL', KEYS[2], sid)
    redis.call('ZREM', KEYS[1], sid)
    dropped = dropped + 1
  elseif pttl == -1 then
    redis.call('ZADD', KEYS[1], '+inf', sid)
  else
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + pttl / 1000, sid)
  end
end
return {dropped, #sids, left}
""",
)

CREATE_USER = LuaScript(
    "create_user",
    r"""
-- KEYS: users:{u}[, user index (one Redis; on a cluster the caller adds the name first)]
-- ARGV: username, field, value, ...
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if #KEYS > 1 then redis.call('SADD', KEYS[2], ARGV[1]) end
return 1
""",
)

UPDATE_USER = LuaScript(
    "update_user",
    r"""
-- KEYS: users:{u};  ARGV: field, value, ...  (nothing is created for a missing user)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
""",
)

DELETE_USER = LuaScript(
    "delete_user",
    r"""
-- KEYS: users:{u}, user's session index, connections:{u}, user's family set, user's current
--       family (the user's slot), then on one Redis only: expiry index, owner hash, user index
-- ARGV: username, sessions key prefix, family key prefix
-- Returns {user existed (0/1), {the user's session ids}, {the user's family ids}}. With 5 KEYS
-- (a cluster) the sessions, families and the user index are left to the caller.
local sids = redis.call('ZRANGE', KEYS[2], 0, -1)
local families = redis.call('SMEMBERS', KEYS[4])
if #KEYS > 5 then
  for _, sid in ipairs(sids) do
    redis.call('DEL', ARGV[2] .. sid)
    redis.call('ZREM', KEYS[6], sid)
    redis.call('HDEL', KEYS[7], sid)
  end
  for _, f in ipairs(families) do redis.call('DEL', ARGV[3] .. f) end
  redis.call('SREM', KEYS[8], ARGV[1])
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return {redis.call('DEL', KEYS[1]), sids, families}
""",
)

CREATE_FAMILY = LuaScript(
    "create_family",
    r"""
-- KEYS: one Redis: family hash, user's current family, user's family set;
--       a cluster (two calls, two slots): the family hash, then the other two.
-- ARGV: expires_at (unix s), family id, field, value, ...
local current = 1
if #KEYS ~= 2 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('EXPIREAT', KEYS[1], ARGV[1])
  if #KEYS == 1 then return 1 end
  current = 2
end
redis.call('SET', KEYS[current], ARGV[2], 'EXAT', ARGV[1])
redis.call('SADD', KEYS[current + 1], ARGV[2])
if redis.call('EXPIRETIME', KEYS[current + 1]) < tonumber(ARGV[1]) then
  redis.call('EXPIREAT', KEYS[current + 1], ARGV[1])
end
return 1
""",
)

ROTATE_REFRESH = LuaScript(
    "rotate_refresh",
    r"""
-- KEYS: family hash;  ARGV: presented jti, new refresh jti, new access jti, new access exp, now
-- Returns {status, flat field list of the family before the call}.
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'unknown'} end
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
if (tonumber(f['expires_at']) or 0) <= tonumber(ARGV[5]) then return {'unknown'} end
if f['revoked'] == '1' then return {'revoked', h} end
if f['refresh_jti'] ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'revoked', '1')
  return {'reused', h}
end
redis.call('HSET', KEYS[1], 'refresh_jti', ARGV[2], 'access_jti', ARGV[3], 'access_exp', ARGV[4])
return {'ok', h}
""",
)

REVOKE_FAMILY = LuaScript(
    "revoke_family",
    r"""
-- KEYS: family hash.  Returns the field list before the call, or nil if unknown.
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return false end
redis.call('HSET', KEYS[1], 'revoked', '1')
return h
""",
)

CLEAR_CURRENT_FAMILY = LuaScript(
    "clear_current_family",
    r"""
-- KEYS: user's current family;  ARGV: family id.  Compare-and-delete.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
)

SET_CONNECTIONS = LuaScript(
    "set_connections",
    r"""
-- KEYS: connections:{u}, ...;  ARGV per key: n, then n field/value pairs.
-- Each hash is replaced whole (no field of an older record survives).
local a = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('DEL', KEYS[i])
  redis.call('HSET', KEYS[i], unpack(ARGV, a + 1, a + 2 * n))
  a = a + 1 + 2 * n
end
return #KEYS
""",
)

MARK_OFFLINE = LuaScript(
    "mark_offline",
    r"""
-- KEYS[1]: connections:{u};  ARGV: gateway id, now (epoch seconds).
-- Offline only if the record still says online on that gateway (a newer record wins).
local on = redis.call('HGET', KEYS[1], 'ws_connected')
if redis.call('HGET', KEYS[1], 'gateway_id') ~= ARGV[1] or not on then
  return 0
end
on = string.lower(on)
if on ~= '1' and on ~= 'true' and on ~= 'yes' and on ~= 'on' then
  return 0
end
redis.call('HSET', KEYS[1], 'ws_connected', '0', 'last_seen', ARGV[2])
redis.call('HDEL', KEYS[1], 'connected_at')
return 1
""",
)

ALL_SCRIPTS = (
    MERGE_SESSION,
    SET_CONNECTIONS,
    MARK_OFFLINE,
    GET_SESSION,
    DELETE_SESSION,
    CLEANUP_SESSIONS,
    CREATE_USER,
    UPDATE_USER,
    DELETE_USER,
    CREATE_FAMILY,
    ROTATE_REFRESH,
    REVOKE_FAMILY,
    CLEAR_CURRENT_FAMILY,
)
