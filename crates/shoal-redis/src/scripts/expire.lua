-- expire: removes the session if it has expired at `now` (sweeper and lazy expiry).
-- Reply: {0} no session (leftover keys removed), {1} removed now, {2, expires_at} still live,
-- {3} unreadable (left alone).
local t = redis.call('TYPE', KEYS[1])
t = t.ok or t
if t == 'none' then
  redis.call('DEL', KEYS[2], KEYS[3])
  return {0}
end
if t ~= 'hash' then
  return {3}
end
local e = expiry_of(redis.call('HGET', KEYS[1], 'a'))
if not e then
  return {3}
end
if e <= now then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return {1}
end
return {2, e}
