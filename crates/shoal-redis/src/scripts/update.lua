-- update: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] = expected revision,
-- ARGV[5..] = the new blob's chunk field/value pairs (d, d1, ...); chunks past them are removed.
-- Reply: {0, the previous blob, the new a, the new c}.
local c, r = load_live(now, true)
if not c then
  return r
end
if c[5] ~= tonumber(ARGV[4]) then
  return {-3, c[5]}
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
c[5] = c[5] + 1
local a = ARGV[1] .. ':' .. ARGV[2]
local cv = pack_c(c)
redis.call('HSET', KEYS[1], 'a', a, 'c', cv, unpack(ARGV, 5))
local i = math.floor((#ARGV - 4) / 2)
while redis.call('HDEL', KEYS[1], 'd' .. i) == 1 do
  i = i + 1
end
pexpire_all(ARGV[3])
return {0, table.concat(old), a, cv}
