-- touch: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms.
local t, r = load_live(now)
if not t then
  return r
end
t[1] = tonumber(ARGV[1])
t[2] = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'a', pack_a(t))
pexpire_all(ARGV[3])
return {0}
