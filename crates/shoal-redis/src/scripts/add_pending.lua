-- add_pending: ARGV[2] = request field, ARGV[3] = the encoded request (v1 envelope),
-- ARGV[4] = most pending requests per session. The stored value is a v1 envelope of
-- {o = insertion order (pending_seq in meta's counters), r = the request}, so list_pending
-- can sort.
local c, r = load_live(now, true)
if not c then
  return r
end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  return {-2}
end
if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[4]) then
  return {-4}
end
c[6] = c[6] + 1
redis.call('HSET', KEYS[1], 'c', pack_c(c))
local v = '\1\130\161o' .. mp_uint(c[6]) .. '\161r' .. string.sub(ARGV[3], 2)
redis.call('HSET', KEYS[3], ARGV[2], v)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {0}
