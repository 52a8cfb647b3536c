-- release_lease: KEYS[1] = the sweep lease, ARGV[1] = this holder's token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
