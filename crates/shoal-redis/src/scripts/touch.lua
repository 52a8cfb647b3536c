-- touch: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms.
-- The hot path (a live, well-formed session) reads field `a` once, checks its shape with one
-- match and rewrites only its first two numbers; anything else goes through load_live for
-- the exact reply (not found, expired and removed, corrupt).
local v = redis.call('HGET', KEYS[1], 'a')
local e, rest
if v then
  e, rest = string.match(v, '^%d+:(%d+):(%d+:%d+:%d+:%d+:%d+:%d+)$')
end
if not rest or tonumber(e) > 9007199254740991 or tonumber(e) <= now then
  local t, r = load_live(now)
  if not t then
    return r
  end
  -- load_live accepted what the match refused: cannot happen, but never write blindly.
  return {-9, 'a', 'unexpected layout'}
end
redis.call('HSET', KEYS[1], 'a', ARGV[1] .. ':' .. ARGV[2] .. ':' .. rest)
slide_ttl(false)
return {0}
