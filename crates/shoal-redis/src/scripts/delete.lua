-- delete: removes every key of the session, whatever their types (so a corrupt session can
-- always be deleted). Reply: {1, created_at} if a live (or unreadable: created_at 0) session
-- existed, {0, created_at, 1} if an expired one was removed, else {0}.
local existed = 0
local created = 0
local expired = 0
local t = redis.call('TYPE', KEYS[1])
t = t.ok or t
if t == 'hash' then
  local a = parse_a(redis.call('HGET', KEYS[1], 'a'))
  created = a and a[3] or 0
  local e = expiry_of(redis.call('HGET', KEYS[1], 'a'))
  if not e or e > now then
    existed = 1
  else
    expired = 1
  end
elseif t ~= 'none' then
  existed = 1
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if existed == 1 then
  if created > 0 then
    feed_add('deleted', 'c', created)
  else
    feed_add('deleted')
  end
  return {1, created}
elseif expired == 1 then
  feed_add('expired', 'c', created)
  return {0, created, 1}
end
return {0}
