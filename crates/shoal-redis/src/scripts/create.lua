-- create: ARGV[2] = PEXPIRE ms, ARGV[3..] = meta field/value pairs.
-- Fails with -2 if a live session holds the id; an expired one is replaced.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = check_live(now)
  if not r then
    return {-2}
  end
  if r[1] == -9 then
    return r
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {0}
