-- touch: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms.
local r = check_live(now)
if r then
  return r
end
redis.call('HSET', KEYS[1], 'last_activity', ARGV[1], 'expires_at', ARGV[2])
pexpire_all(ARGV[3])
return {0}
