-- delete: removes every key of the session, whatever their types (so a corrupt session can
-- always be deleted). Reply: {1} if a live (or unreadable) session existed, else {0}.
local existed = 0
local t = redis.call('TYPE', KEYS[1])
t = t.ok or t
if t == 'hash' then
  local e = expiry_of(redis.call('HGET', KEYS[1], 'a'))
  if not e or e > now then
    existed = 1
  end
elseif t ~= 'none' then
  existed = 1
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {existed}
