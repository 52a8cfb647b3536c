-- release_place: KEYS[1] = <prefix>:idx:{cap}:live (the capacity set), KEYS[2] = a session's
-- meta hash; ARGV[1] = sid. Gives back the place of a session whose create failed in doubt,
-- unless the session exists (then the place is its own). Single server only: the two keys
-- live in different cluster slots.
-- Reply: 1 released, 0 kept (the session exists, or there was no place).
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
return redis.call('ZREM', KEYS[1], ARGV[1])
