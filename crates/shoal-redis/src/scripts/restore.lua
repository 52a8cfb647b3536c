-- restore: ARGV[2] = PEXPIRE ms, ARGV[3] = k meta pairs, ARGV[4 .. 3+2k] = meta pairs,
-- then f = number of frames, f encoded frames, then pending field/value pairs.
-- Fails with -2 if a live session holds the id.
local r = check_free(now)
if r then
  return r
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local k = tonumber(ARGV[3])
local i = 4
local meta = {}
for j = i, i + 2 * k - 1 do
  meta[#meta + 1] = ARGV[j]
end
redis.call('HSET', KEYS[1], unpack(meta))
i = i + 2 * k
local f = tonumber(ARGV[i])
i = i + 1
local frames = {}
local b = 0
for j = i, i + f - 1 do
  frames[#frames + 1] = ARGV[j]
  b = b + #ARGV[j]
end
rpush_all(frames)
i = i + f
local q = 0
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  b = b + #ARGV[i + 1]
  q = q + 1
  i = i + 2
end
redis.call('HSET', KEYS[1], 'b', b, 'q', q)
pexpire_all(ARGV[2])
feed_add('created', 'x', feed and feed_header().detail)
return {0}
