-- Shared helpers, prepended to every per-session script.
--
-- Every per-session script gets the same three keys, all with the session's {sid} hash tag:
--   KEYS[1] = <prefix>:{<sid>}:meta      Hash (schema 2, see meta.rs)
--   KEYS[2] = <prefix>:{<sid>}:frames    List
--   KEYS[3] = <prefix>:{<sid>}:requests  Hash
-- and ARGV[1] = now (ms since the epoch, from the calling store's clock).
--
-- The meta hash has two kinds of fields:
--   a          '<last_activity>:<expires_at>:<created_at>:<seq>:<first_seq>:<frame_count>:
--              <revision>:<pending_seq>' (decimal integers), read as the table
--              {la, exp, created, seq, first, count, rev, pseq}
--   d, d1 ..   the caller-owned fields, one codec blob in chunks (never read here, except by
--              update, which returns the previous blob)
--
-- Replies are arrays whose first element is a status:
--    0  ok (further elements depend on the script)
--   -1  not found; second element 1 if an expired session was just removed, else 0
--   -2  already exists
--   -3  revision conflict; second element the stored revision
--   -4  pending-request limit reached
--   -9  corrupt; second element the name of the bad meta field, third the reason

-- A stored non-negative integer, or nil if the value is not one. Lua numbers are doubles,
-- so only values up to 2^53 - 1 are accepted.
local function int(v)
  if type(v) ~= 'string' or #v > 16 or not string.match(v, '^%d+$') then
    return nil
  end
  local n = tonumber(v)
  if n > 9007199254740991 then
    return nil
  end
  return n
end

-- An integer as a decimal string (never in exponent notation).
local function dec(n)
  return string.format('%d', n)
end

-- n (0 <= n < 2^53) as `bytes` big-endian bytes.
local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end

-- n as the shortest MessagePack unsigned integer.
local function mp_uint(n)
  if n < 128 then
    return string.char(n)
  elseif n < 256 then
    return '\204' .. string.char(n)
  elseif n < 65536 then
    return '\205' .. be(n, 2)
  elseif n < 4294967296 then
    return '\206' .. be(n, 4)
  end
  return '\207' .. be(n, 8)
end

-- The expiry in field `a` (nil if `a` does not start with two integers).
local function expiry_of(v)
  if type(v) ~= 'string' then
    return nil
  end
  local la, e = string.match(v, '^(%d+):(%d+):')
  if not int(la) then
    return nil
  end
  return int(e)
end

-- Field `a` as a table {la, exp, created, seq, first, count, rev, pseq} (nil if malformed).
local function parse_a(v)
  if type(v) ~= 'string' then
    return nil
  end
  local t = {string.match(v, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')}
  if #t ~= 8 then
    return nil
  end
  for i = 1, 8 do
    t[i] = int(t[i])
    if not t[i] then
      return nil
    end
  end
  return t
end

local function pack_a(t)
  local out = {}
  for i = 1, 8 do
    out[i] = dec(t[i])
  end
  return table.concat(out, ':')
end

-- Loads a live session: returns its field `a` as a table, or nil and the reply to return
-- (not found, or corrupt). An expired session is removed on the spot (lazy expiry). Reads
-- only; nothing is written before the caller's own validation is done.
local function load_live(now)
  local v = redis.call('HGET', KEYS[1], 'a')
  if not v then
    if redis.call('EXISTS', KEYS[1]) == 0 then
      return nil, {-1, 0}
    end
    if redis.call('HEXISTS', KEYS[1], 'expires_at') == 1 then
      return nil, {-9, 'a', 'schema1'}
    end
    return nil, {-9, 'a', 'missing'}
  end
  local t = parse_a(v)
  if not t then
    return nil, {-9, 'a', 'not eight integers'}
  end
  if t[2] <= now then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
    return nil, {-1, 1}
  end
  return t
end

local function pexpire_all(ms)
  redis.call('PEXPIRE', KEYS[1], ms)
  redis.call('PEXPIRE', KEYS[2], ms)
  redis.call('PEXPIRE', KEYS[3], ms)
end

-- Pushes `items` onto the frames list in chunks (Lua's unpack has a stack limit).
local function rpush_all(items)
  local chunk = {}
  for i = 1, #items do
    chunk[#chunk + 1] = items[i]
    if #chunk == 1000 then
      redis.call('RPUSH', KEYS[2], unpack(chunk))
      chunk = {}
    end
  end
  if #chunk > 0 then
    redis.call('RPUSH', KEYS[2], unpack(chunk))
  end
end

-- The meta hash of a session that is being (re)created: is a live or unreadable session in
-- the way? Returns nil when the id is free (an expired session is replaced), else the reply.
local function check_free(now)
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return nil
  end
  local _, r = load_live(now)
  if r == nil then
    return {-2}
  end
  if r[1] == -9 then
    return r
  end
  return nil
end

local now = tonumber(ARGV[1])
