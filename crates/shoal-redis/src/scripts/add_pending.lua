-- add_pending: ARGV[2] = request field, ARGV[3] = the encoded request (v1 envelope),
-- ARGV[4] = most pending requests per session. The stored value is a v1 envelope of
-- {o = insertion order (HINCRBY on meta), r = the request}, so list_pending can sort.
local r = check_live(now)
if r then
  return r
end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  return {-2}
end
if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[4]) then
  return {-4}
end
local order = redis.call('HINCRBY', KEYS[1], 'pending_seq', 1)
local v = '\1\130\161o' .. mp_uint(order) .. '\161r' .. string.sub(ARGV[3], 2)
redis.call('HSET', KEYS[3], ARGV[2], v)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {0}
