-- Shared helpers, prepended to every per-session script.
--
-- Every per-session script gets the same three keys, all with the session's {sid} hash tag:
--   KEYS[1] = <prefix>:{<sid>}:meta      Hash
--   KEYS[2] = <prefix>:{<sid>}:frames    List
--   KEYS[3] = <prefix>:{<sid>}:requests  Hash
-- and ARGV[1] = now (ms since the epoch, from the calling store's clock).
--
-- Replies are arrays whose first element is a status:
--    0  ok (further elements depend on the script)
--   -1  not found; second element 1 if an expired session was just removed, else 0
--   -2  already exists
--   -3  revision conflict; second element the stored revision
--   -4  pending-request limit reached
--   -9  corrupt; second element the name of the bad meta field

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

-- nil when the session exists and has not expired at `now`; otherwise the reply to return.
-- An expired session is removed on the spot (lazy expiry).
local function check_live(now)
  local e = redis.call('HGET', KEYS[1], 'expires_at')
  if not e then
    return {-1, 0}
  end
  local ei = int(e)
  if not ei then
    return {-9, 'expires_at'}
  end
  if ei <= now then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
    return {-1, 1}
  end
  return nil
end

-- The session's retained range: first_seq, last_seq (or nil plus the bad field).
local function seq_range()
  local m = redis.call('HMGET', KEYS[1], 'first_seq', 'seq')
  local first = int(m[1])
  if not first then
    return nil, 'first_seq'
  end
  local last = int(m[2])
  if not last then
    return nil, 'seq'
  end
  return first, last
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

local now = tonumber(ARGV[1])
