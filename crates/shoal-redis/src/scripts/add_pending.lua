-- add_pending: ARGV[2] = request field, ARGV[3] = the encoded request (v1 envelope),
-- ARGV[4] = most pending requests per session, ARGV[5] = the session's byte budget (-5 over
-- it), ARGV[6] = a bound on the metadata's stored bytes (measured only when needed). The stored value is a v1 envelope of
-- {o = insertion order (pending_seq in meta's field a), r = the request}, so list_pending
-- can sort.
local t, r = load_live(now)
if not t then
  return r
end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  return {-2}
end
local held = redis.call('HLEN', KEYS[3])
local q = pending_count()
if q and held < q then
  return evicted('requests', held, q .. ' pending requests')
end
if held >= tonumber(ARGV[4]) then
  return {-4}
end
t[8] = t[8] + 1
local v = '\1\130\161o' .. mp_uint(t[8]) .. '\161r' .. string.sub(ARGV[3], 2)
local b = stored_bytes() + #v
local budget = tonumber(ARGV[5])
if b + tonumber(ARGV[6]) > budget and b + meta_bytes() > budget then
  return {-5}
end
redis.call('HSET', KEYS[1], 'a', pack_a(t), 'b', b, 'q', held + 1)
redis.call('HSET', KEYS[3], ARGV[2], v)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {0}
