-- touch: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms.
local ok, r = load_live(now, false)
if not ok then
  return r
end
redis.call('HSET', KEYS[1], 'a', ARGV[1] .. ':' .. ARGV[2])
pexpire_all(ARGV[3])
return {0}
