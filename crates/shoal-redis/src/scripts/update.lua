-- update: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] = expected revision,
-- ARGV[5..] = the new blob's chunk field/value pairs (d, d1, ...); chunks past them are removed.
-- Reply: {0, the previous blob, the new a}.
local t, r = load_live(now)
if not t then
  return r
end
if t[7] ~= tonumber(ARGV[4]) then
  return {-3, t[7]}
end
local old = {}
for i = 0, 64 do
  local name = i == 0 and 'd' or ('d' .. i)
  local v = redis.call('HGET', KEYS[1], name)
  if not v then
    break
  end
  old[#old + 1] = v
end
t[1] = now
t[2] = tonumber(ARGV[2])
t[7] = t[7] + 1
local a = pack_a(t)
redis.call('HSET', KEYS[1], 'a', a, unpack(ARGV, 5))
local i = math.floor((#ARGV - 4) / 2)
while redis.call('HDEL', KEYS[1], 'd' .. i) == 1 do
  i = i + 1
end
slide_ttl(false)
feed_add('updated', 'r', t[7], 'x', feed and feed_header().detail)
return {0, table.concat(old), a}
