-- expire: removes the session if it has expired at `now` (sweeper and lazy expiry).
-- Reply: {0} no session (leftover keys removed), {1, created_at} removed now,
-- {2, expires_at} still live, {3} unreadable (left alone).
local t = redis.call('TYPE', KEYS[1])
t = t.ok or t
if t == 'none' then
  redis.call('DEL', KEYS[2], KEYS[3])
  return {0}
end
if t ~= 'hash' then
  return {3}
end
local v = redis.call('HGET', KEYS[1], 'a')
local e = expiry_of(v)
if not e then
  return {3}
end
if e <= now then
  local a = parse_a(v)
  local created = a and a[3] or 0
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  feed_add('expired', 'c', created)
  return {1, created}
end
return {2, e}
