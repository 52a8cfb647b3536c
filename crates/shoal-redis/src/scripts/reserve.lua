-- reserve: KEYS[1] = <prefix>:idx:{cap}:live (ZSET, member = sid, score = expires_at).
-- ARGV[1] = sid, ARGV[2] = score, ARGV[3] = max_sessions.
-- Reply: 1 reserved (added), 2 already a member, 0 full. Atomic, so concurrent creates on any
-- number of instances never exceed the limit.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 2
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
