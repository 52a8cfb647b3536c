-- create_placed: a create, its place under max_sessions and its listing entry in one script
-- (single server only: KEYS[4] and KEYS[5] live in other cluster slots than the session).
-- KEYS[4] = <prefix>:idx:{cap}:live (the capacity set), KEYS[5] = the session's listing bucket.
-- ARGV[2] = PEXPIRE ms, ARGV[3] = the place's score (expires_at ms), ARGV[4] = max_sessions,
-- ARGV[5] = sid, ARGV[6..] = meta field/value pairs (a, d chunks).
-- Reply: {0} created; {-2} a live session holds the id; {-6} no place left (nothing written);
-- {-9, field, reason} the session in the way is corrupt. An expired session is replaced and
-- keeps its place.
local r = check_free(now)
if r then
  return r
end
if not redis.call('ZSCORE', KEYS[4], ARGV[5]) then
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then
    return {-6}
  end
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[5], 0, ARGV[5])
feed_add('created', 'x', feed and feed_header().detail)
return {0}
