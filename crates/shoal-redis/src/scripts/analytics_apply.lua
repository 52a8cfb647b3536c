-- analytics_apply (not a per-session script): applies a batch of change feed entries of one
-- shard to that shard's analytics structures, each entry at most once: an entry is applied
-- only when this script's XACK of it in the consumer group succeeds, so a batch delivered
-- twice (a consumer that died after applying, before its acknowledgement reached anyone, or
-- a claimed batch) counts once.
--
-- KEYS[1] = the feed shard (a Stream), KEYS[2] = the shard's analytics key prefix
-- ('<prefix>:an:{f<shard>}:'; every key below is that prefix plus a name, in the shard's slot).
-- ARGV[1] = the consumer group, ARGV[2] = most distinct method/tool/client names kept (later
-- ones count as '(other)'), ARGV[3] = how long an unpaired request or response is kept (s),
-- then 6 values per entry: id, kind, session id, detail (the wire format's field x), created
-- at (ms, or ''), the entry's time (ms).
--
-- Structures (hashes): live (sid -> 'created\tclient\tprotocol\ttransport'), clients,
-- protocols, transports (live counts), totals, methods / methods_err / tools / tools_err
-- (counts), lat:method:<name> / lat:tool:<name> / durations (histograms: bucket -> count,
-- bucket = ceil(10 * ln(1 + ms)), about 10% wide), m:<hour> ('<minute>:s' / ':e' started /
-- ended, kept 49 h), if:<sid> (requests and responses waiting for their pair, either order).
-- Reply: how many entries were applied.
local feed, p = KEYS[1], KEYS[2]
local group = ARGV[1]
local maxnames = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])

local function bucket(ms)
  if ms < 0 then
    ms = 0
  end
  return math.ceil(math.log(1 + ms) * 10)
end

local function split(x)
  local t = {}
  for part in string.gmatch(x .. '\t', '([^\t]*)\t') do
    t[#t + 1] = part
  end
  return t
end

-- The name under which `name` is counted in hash `key`: itself, or '(other)' once the hash
-- holds maxnames names (hostile clients cannot grow it without bound).
local function named(key, name)
  if name == '' then
    name = '(none)'
  end
  if redis.call('HEXISTS', key, name) == 1 or redis.call('HLEN', key) < maxnames then
    return name
  end
  return '(other)'
end

local function live_count(hash, name, by)
  if name == '' then
    name = '(unknown)'
  end
  local n = redis.call('HINCRBY', p .. hash, name, by)
  if n <= 0 then
    redis.call('HDEL', p .. hash, name)
  end
end

local function per_minute(ts, what)
  local m = math.floor(ts / 60000)
  local k = p .. 'm:' .. math.floor(m / 60)
  redis.call('HINCRBY', k, m .. ':' .. what, 1)
  redis.call('EXPIRE', k, 176400)
end

-- A request and its response met: latency and outcome, per method and per tool.
local function completed(method, tool, latency, err)
  local m = named(p .. 'methods', method)
  redis.call('HINCRBY', p .. 'lat:method:' .. m, bucket(latency), 1)
  if err ~= '' then
    redis.call('HINCRBY', p .. 'methods_err', m, 1)
  end
  if tool ~= '' then
    local t = named(p .. 'tools', tool)
    redis.call('HINCRBY', p .. 'lat:tool:' .. t, bucket(latency), 1)
    if err ~= '' then
      redis.call('HINCRBY', p .. 'tools_err', t, 1)
    end
  end
end

local function frame(sid, x, at)
  local f = split(x)
  -- dir, stream, method, id, tool, error, size, timestamp
  local dir, method, rpcid, tool, err = f[1], f[3] or '', f[4] or '', f[5] or '', f[6] or ''
  local ts = tonumber(f[8] or '') or 0
  if ts == 0 then
    ts = at
  end
  redis.call('HINCRBY', p .. 'totals', 'frames', 1)
  redis.call('HINCRBY', p .. 'totals', 'bytes', tonumber(f[7] or '') or 0)
  if method ~= '' then
    local m = named(p .. 'methods', method)
    redis.call('HINCRBY', p .. 'methods', m, 1)
    if tool ~= '' then
      redis.call('HINCRBY', p .. 'tools', named(p .. 'tools', tool), 1)
    end
  end
  if rpcid == '' then
    return
  end
  local inflight = p .. 'if:' .. sid
  if method ~= '' then
    -- A request: its response may already be here.
    local field = dir .. rpcid
    local other = redis.call('HGET', inflight, field)
    if other and string.sub(other, 1, 1) == 'r' then
      local o = split(other)
      redis.call('HDEL', inflight, field)
      completed(method, tool, tonumber(o[2]) - ts, o[3] or '')
    else
      redis.call('HSET', inflight, field, 'q\t' .. ts .. '\t' .. method .. '\t' .. tool)
      redis.call('EXPIRE', inflight, ttl)
    end
  else
    -- A response goes the other way from its request.
    local field = (dir == 'c' and 's' or 'c') .. rpcid
    local other = redis.call('HGET', inflight, field)
    if other and string.sub(other, 1, 1) == 'q' then
      local o = split(other)
      redis.call('HDEL', inflight, field)
      completed(o[3], o[4] or '', ts - tonumber(o[2]), err)
    else
      redis.call('HSET', inflight, field, 'r\t' .. ts .. '\t' .. err)
      redis.call('EXPIRE', inflight, ttl)
    end
  end
end

local function created(sid, x, at)
  if redis.call('HEXISTS', p .. 'live', sid) == 1 then
    return
  end
  local s = split(x)
  -- transport, protocol, client name, client version, principal
  local client = s[3] or ''
  if client ~= '' and (s[4] or '') ~= '' then
    client = client .. '/' .. s[4]
  end
  client = named(p .. 'clients', client)
  redis.call('HSET', p .. 'live', sid, at .. '\t' .. client .. '\t' .. (s[2] or '') .. '\t' .. (s[1] or ''))
  live_count('clients', client, 1)
  live_count('protocols', s[2] or '', 1)
  live_count('transports', s[1] or '', 1)
  redis.call('HINCRBY', p .. 'totals', 'created', 1)
  per_minute(at, 's')
end

local function ended(kind, sid, c, at)
  local v = redis.call('HGET', p .. 'live', sid)
  local since = tonumber(c)
  if v then
    local s = split(v)
    since = since or tonumber(s[1])
    live_count('clients', s[2] or '', -1)
    live_count('protocols', s[3] or '', -1)
    live_count('transports', s[4] or '', -1)
    redis.call('HDEL', p .. 'live', sid)
  end
  if since and since > 0 then
    redis.call('HINCRBY', p .. 'durations', bucket(at - since), 1)
  end
  redis.call('DEL', p .. 'if:' .. sid)
  redis.call('HINCRBY', p .. 'totals', 'ended', 1)
  redis.call('HINCRBY', p .. 'totals', kind, 1)
  per_minute(at, 'e')
end

local applied = 0
for i = 4, #ARGV - 5, 6 do
  if redis.call('XACK', feed, group, ARGV[i]) == 1 then
    applied = applied + 1
    local kind, sid, x, c, at = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
    if kind == 'frame' then
      frame(sid, x, at)
    elseif kind == 'created' then
      created(sid, x, at)
    elseif kind == 'deleted' or kind == 'expired' or kind == 'evicted' then
      ended(kind, sid, c, at)
    end
  end
end
return applied
