-- renew_lease: KEYS[1] = the sweep lease, ARGV[1] = this holder's token, ARGV[2] = lease ms.
-- Reply: 1 renewed, 0 the lease is no longer this holder's (it lapsed, another took it).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
