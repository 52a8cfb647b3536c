-- Shared helpers, prepended to every per-session script.
--
-- Every per-session script gets the same three keys, all with the session's {sid} hash tag:
--   KEYS[1] = <prefix>:{<sid>}:meta      Hash (schema 2, see meta.rs)
--   KEYS[2] = <prefix>:{<sid>}:frames    List
--   KEYS[3] = <prefix>:{<sid>}:requests  Hash
-- and ARGV[1] = now (ms since the epoch, from the calling store's clock), or, when the change
-- feed is written here (single server), '<now> <cap> <touch_ms> <sid>' then a newline and the
-- entry detail the caller built (one line per frame for append); the feed stream is then the
-- last key (KEYS[#KEYS]). See feed_add for the entries.
--
-- The meta hash has two kinds of fields:
--   a          '<last_activity>:<expires_at>:<created_at>:<seq>:<first_seq>:<frame_count>:
--              <revision>:<pending_seq>' (decimal integers), read as the table
--              {la, exp, created, seq, first, count, rev, pseq}
--   d, d1 ..   the caller-owned fields, one codec blob in chunks (never read here, except by
--              update, which returns the previous blob)
--   b          the stored bytes of the session's frames and pending requests (absent: 0),
--              kept by every script that adds or removes either
--   q          how many pending requests the requests hash holds (absent: not counted, for
--              sessions written before it existed), kept by add_pending, take_pending,
--              restore; a requests hash with fewer entries was evicted
--   e          the frame epochs: '<epoch>@<first_seq>' pairs, comma-separated, in the order
--              the epochs started (absent: none yet), kept by append (see epoch_for_append)
--   i          the identity (13 hex digits of the replication id) of the server that appended
--              last, kept by append
--
-- Replies are arrays whose first element is a status:
--    0  ok (further elements depend on the script)
--   -1  not found; second element 1 if an expired session was just removed, 2 if keys left
--       without their meta (evicted) were just removed, else 0
--   -2  already exists
--   -3  revision conflict; second element the stored revision
--   -4  pending-request limit reached
--   -5  the session's byte budget would be passed
--   -9  corrupt; second element the name of the bad meta field (or 'frames' / 'requests':
--       the list or hash lost entries meta counts — evicted — and the session's remaining
--       keys were removed, so it is whole or absent), third the reason

-- now (a number), now_s (its decimal text) and feed: ARGV[1] when it carries the feed header
-- (nil when the scripts do not write the feed), parsed only when an entry is written.
local now, now_s, feed
do
  local a = ARGV[1]
  local sp = string.find(a, ' ', 1, true)
  if sp then
    now_s = string.sub(a, 1, sp - 1)
    feed = a
  else
    now_s = a
  end
  now = tonumber(now_s)
end

-- The feed header's parts {key, cap, touch (ms), sid, detail}, parsed at the first use.
local feed_parts
local function feed_header()
  if not feed_parts then
    local cap, touch, sid, detail = string.match(feed, '^%d+ (%d+) (%d+) (%S+)\n?(.*)$')
    feed_parts = {key = KEYS[#KEYS], cap = cap, touch = tonumber(touch), sid = sid, detail = detail}
  end
  return feed_parts
end

-- Writes one change feed entry (wire format v1: fields v, k, s, then the kind's own; see
-- shoal_core::feed::change) into the feed stream, capped with MAXLEN ~, in this script:
-- the entry and its change are one atomic step. Nothing when the feed is off here.
local function feed_add(kind, ...)
  if feed then
    local h = feed_header()
    redis.call('XADD', h.key, 'MAXLEN', '~', h.cap, '*', 'v', '1', 'k', kind, 's', h.sid, ...)
  end
end

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

-- n (0 <= n < 2^53) as the shortest MessagePack unsigned integer. The bytes are computed
-- inline (no table, no loop): this runs once per appended frame.
local function mp_uint(n)
  local floor, char = math.floor, string.char
  if n < 128 then
    return char(n)
  elseif n < 256 then
    return char(204, n)
  elseif n < 65536 then
    return char(205, floor(n / 256), n % 256)
  elseif n < 4294967296 then
    return char(206, floor(n / 16777216), floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
  end
  local hi, lo = floor(n / 4294967296), n % 4294967296
  return char(207, floor(hi / 16777216), floor(hi / 65536) % 256, floor(hi / 256) % 256, hi % 256,
    floor(lo / 16777216), floor(lo / 65536) % 256, floor(lo / 256) % 256, lo % 256)
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
-- One anchored match and eight tonumber calls: this runs in every write script, and each
-- extra string.match costs the server about a microsecond.
local function parse_a(v)
  if type(v) ~= 'string' then
    return nil
  end
  local a1, a2, a3, a4, a5, a6, a7, a8 =
    string.match(v, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')
  if not a8 then
    return nil
  end
  local t = {tonumber(a1), tonumber(a2), tonumber(a3), tonumber(a4),
             tonumber(a5), tonumber(a6), tonumber(a7), tonumber(a8)}
  for i = 1, 8 do
    -- More than 2^53 - 1 (or 17+ digits) cannot be held exactly.
    if t[i] > 9007199254740991 then
      return nil
    end
  end
  return t
end

local function pack_a(t)
  return string.format('%d:%d:%d:%d:%d:%d:%d:%d', t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8])
end

-- Loads a live session: returns its field `a` as a table, or nil and the reply to return
-- (not found, or corrupt). An expired session is removed on the spot (lazy expiry). Reads
-- only; nothing is written before the caller's own validation is done.
local function load_live(now)
  local v = redis.call('HGET', KEYS[1], 'a')
  if not v then
    if redis.call('EXISTS', KEYS[1]) == 0 then
      -- Frames or requests without their meta: the meta was evicted. Remove the rest.
      if redis.call('DEL', KEYS[2], KEYS[3]) > 0 then
        feed_add('evicted')
        return nil, {-1, 2}
      end
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
    feed_add('expired', 'c', t[3])
    return nil, {-1, 1}
  end
  return t
end

-- Field `b`: the stored bytes of the session's frames and pending requests.
local function stored_bytes()
  return tonumber(redis.call('HGET', KEYS[1], 'b') or '0') or 0
end

-- The stored bytes of the caller-owned fields (the blob's chunks).
local function meta_bytes()
  local n = redis.call('HSTRLEN', KEYS[1], 'd')
  for i = 1, 7 do
    local l = redis.call('HSTRLEN', KEYS[1], 'd' .. i)
    if l == 0 then
      break
    end
    n = n + l
  end
  return n
end

-- A session one of whose keys lost entries meta counts (evicted under memory pressure, or
-- removed by hand): what is left is removed whole, never served with holes. The reply says
-- which key and how much was left.
local function evicted(which, left, counted)
  local t = parse_a(redis.call('HGET', KEYS[1], 'a'))
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  if t then
    feed_add('evicted', 'c', t[3])
  else
    feed_add('evicted')
  end
  return {-9, which, 'evicted: ' .. left .. ' of ' .. counted .. ' are left; the session was removed'}
end

-- The epoch of the frames an append adds from `first_seq` on, starting a new one in field
-- `e` when the server is not the one that appended last (field `i`: its identity). The
-- identity is the first 13 hex digits (52 bits) of the server's replication id, which a
-- promoted replica and a restarted server replace with a new random one, and the epoch is
-- that number: seqs handed out again after a rollback (a failover to a replica that lacked
-- the newest appends, a restart from an older snapshot) belong to another epoch than the lost
-- frames' event ids. At most three starts are kept; the oldest merges into the next, which
-- takes its seq. Call it only once the append is sure to be written. Costs INFO replication
-- and one HGET per append (about 3 µs of server time here); `e` is parsed only when the
-- server changed.
local function epoch_for_append(first_seq)
  -- A user without +info gets no epochs (0: not known) rather than failing appends.
  local info = redis.pcall('INFO', 'replication')
  if type(info) ~= 'string' then
    return 0
  end
  local at = string.find(info, 'master_replid:', 1, true)
  local ident = at and string.sub(info, at + 14, at + 26)
  if not ident or not string.match(ident, '^%x+$') or #ident ~= 13 then
    return 0
  end
  local epoch = tonumber(ident, 16)
  if epoch == 0 then
    epoch = 1
  end
  if redis.call('HGET', KEYS[1], 'i') == ident then
    return epoch
  end
  local v = redis.call('HGET', KEYS[1], 'e')
  local starts = {}
  if v then
    for ep, seq in string.gmatch(v, '(%d+)@(%d+)') do
      starts[#starts + 1] = {tonumber(ep), tonumber(seq)}
    end
  end
  local last = starts[#starts]
  if last and (last[1] == epoch or first_seq <= last[2]) then
    redis.call('HSET', KEYS[1], 'i', ident)
    return epoch
  end
  local kept = {}
  for i = 1, #starts do
    if starts[i][1] ~= epoch then
      kept[#kept + 1] = starts[i]
    end
  end
  kept[#kept + 1] = {epoch, first_seq}
  while #kept > 3 do
    kept[2][2] = kept[1][2]
    table.remove(kept, 1)
  end
  local out = {}
  for i = 1, #kept do
    out[i] = string.format('%d@%d', kept[i][1], kept[i][2])
  end
  redis.call('HSET', KEYS[1], 'e', table.concat(out, ','), 'i', ident)
  return epoch
end

-- Field `q` (nil if the session predates it) and whether the requests hash lost entries.
local function pending_count()
  return tonumber(redis.call('HGET', KEYS[1], 'q') or '')
end

local function pexpire_all(ms)
  redis.call('PEXPIRE', KEYS[1], ms)
  redis.call('PEXPIRE', KEYS[2], ms)
  redis.call('PEXPIRE', KEYS[3], ms)
end

-- The sliding TTL of a write that moves the expiry to ARGV[2], with ARGV[3] = the PEXPIRE ms
-- (time left until ARGV[2] plus the grace): every key of the session gets ARGV[3], unless
-- meta's TTL already covers the time left plus half the grace — then nothing is written.
-- The three keys always share one TTL (every script that sets one sets all three, and
-- add_pending gives a new requests hash meta's), so meta's stands for all. `created` says
-- this script created one of the keys (it has no TTL yet). A session written more often than
-- every grace/2 re-arms its TTL once per grace/2 instead of three PEXPIREs per write.
local function slide_ttl(created)
  local ms = tonumber(ARGV[3])
  local left = tonumber(ARGV[2]) - now
  if not created and redis.call('PTTL', KEYS[1]) >= left + (ms - left) / 2 then
    return
  end
  pexpire_all(ms)
end

-- Pushes `items` onto the frames list in chunks (Lua's unpack has a stack limit). Returns
-- the list's length after the push (nil if `items` is empty). RPUSH fails with WRONGTYPE
-- before writing anything if the key is not a list.
local function rpush_all(items)
  if #items <= 1000 then
    if #items == 0 then
      return nil
    end
    return redis.call('RPUSH', KEYS[2], unpack(items))
  end
  local chunk = {}
  local n
  for i = 1, #items do
    chunk[#chunk + 1] = items[i]
    if #chunk == 1000 then
      n = redis.call('RPUSH', KEYS[2], unpack(chunk))
      chunk = {}
    end
  end
  if #chunk > 0 then
    n = redis.call('RPUSH', KEYS[2], unpack(chunk))
  end
  return n
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
