-- take_pending: ARGV[2] = request field. Reply: {0, value} or {0} if not pending.
local t, r = load_live(now)
if not t then
  return r
end
local v = redis.call('HGET', KEYS[3], ARGV[2])
local q = pending_count()
if not v then
  -- A miss is normal (answered, or never asked); a miss on a hash that lost the requests
  -- meta counts is not.
  if q and q > 0 then
    local left = redis.call('HLEN', KEYS[3])
    if left < q then
      return evicted('requests', left, q .. ' pending requests')
    end
  end
  return {0}
end
redis.call('HDEL', KEYS[3], ARGV[2])
local b = stored_bytes() - #v
if b < 0 then
  b = 0
end
if q then
  redis.call('HSET', KEYS[1], 'b', b, 'q', math.max(0, q - 1))
else
  redis.call('HSET', KEYS[1], 'b', b)
end
return {0, v}
