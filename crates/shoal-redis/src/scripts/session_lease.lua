-- session_lease: a named lease of a live session (see shoal_core::lease for the rules).
-- KEYS[4] = <prefix>:{<sid>}:lease:<name>, a string holding the owner token with a PX expiry
-- (Redis's own clock times it, so the callers' clocks may disagree).
-- ARGV[2] = 'acquire' | 'renew' | 'release' | 'read', ARGV[3] = owner, ARGV[4] = ttl ms.
-- Reply: {0, granted} when no live holder remains, {0, granted, holder, pttl} otherwise.
local t, r = load_live(now)
if not t then
  return r
end
local key, mode, owner = KEYS[4], ARGV[2], ARGV[3]
local granted = 0
if mode == 'acquire' then
  if redis.call('SET', key, owner, 'NX', 'PX', ARGV[4]) then
    granted = 1
  elseif redis.call('GET', key) == owner then
    redis.call('PEXPIRE', key, ARGV[4])
    granted = 1
  end
elseif mode == 'renew' then
  if redis.call('GET', key) == owner then
    redis.call('PEXPIRE', key, ARGV[4])
    granted = 1
  end
elseif mode == 'release' then
  if redis.call('GET', key) == owner then
    redis.call('DEL', key)
    granted = 1
  end
end
local holder = redis.call('GET', key)
if not holder then
  return {0, granted}
end
if mode == 'read' then
  granted = 1
end
return {0, granted, holder, redis.call('PTTL', key)}
