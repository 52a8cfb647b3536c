-- create: ARGV[2] = PEXPIRE ms, ARGV[3..] = meta field/value pairs (a, c, d chunks).
-- Fails with -2 if a live session holds the id; an expired one is replaced.
local r = check_free(now)
if r then
  return r
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
feed_add('created', 'x', feed and feed_header().detail)
return {0}
