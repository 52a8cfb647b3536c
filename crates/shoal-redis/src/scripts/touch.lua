-- touch: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] (with the feed) = the start
-- of the current touch window (ms; absent: touches are not reported).
-- The hot path (a live, well-formed session) reads field `a` once, checks its shape with one
-- match and rewrites only its first two numbers; anything else goes through load_live for
-- the exact reply (not found, expired and removed, corrupt). A 'touched' feed entry is
-- written when the last activity was before the current touch window (at most one per
-- window; the header is parsed only then).
-- Reply: {0, the previous last activity}.
local v = redis.call('HGET', KEYS[1], 'a')
local la, e, rest
if v then
  la, e, rest = string.match(v, '^(%d+):(%d+):(%d+:%d+:%d+:%d+:%d+:%d+)$')
end
if not rest or tonumber(e) > 9007199254740991 or tonumber(e) <= now then
  local t, r = load_live(now)
  if not t then
    return r
  end
  -- load_live accepted what the match refused: cannot happen, but never write blindly.
  return {-9, 'a', 'unexpected layout'}
end
redis.call('HSET', KEYS[1], 'a', now_s .. ':' .. ARGV[2] .. ':' .. rest)
slide_ttl(false)
if feed and ARGV[4] and tonumber(la) < tonumber(ARGV[4]) then
  feed_add('touched')
end
return {0, la}
