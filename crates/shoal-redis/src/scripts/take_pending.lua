-- take_pending: ARGV[2] = request field. Reply: {0, value} or {0} if not pending.
local t, r = load_live(now)
if not t then
  return r
end
local v = redis.call('HGET', KEYS[3], ARGV[2])
if not v then
  return {0}
end
redis.call('HDEL', KEYS[3], ARGV[2])
local b = stored_bytes() - #v
if b < 0 then
  b = 0
end
redis.call('HSET', KEYS[1], 'b', b)
return {0, v}
