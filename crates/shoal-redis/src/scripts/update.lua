-- update: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] = expected revision,
-- ARGV[5] = k, ARGV[6 .. 5+2k] = caller-owned field/value pairs to set, the rest = optional
-- fields to remove. Reply: {0, previous status, HGETALL of the updated meta}.
local r = check_live(now)
if r then
  return r
end
local m = redis.call('HMGET', KEYS[1], 'revision', 'status')
local rev = int(m[1])
if not rev then
  return {-9, 'revision'}
end
if rev ~= tonumber(ARGV[4]) then
  return {-3, rev}
end
local k = tonumber(ARGV[5])
local set = {}
for i = 6, 5 + 2 * k do
  set[#set + 1] = ARGV[i]
end
set[#set + 1] = 'revision'
set[#set + 1] = dec(rev + 1)
set[#set + 1] = 'last_activity'
set[#set + 1] = ARGV[1]
set[#set + 1] = 'expires_at'
set[#set + 1] = ARGV[2]
redis.call('HSET', KEYS[1], unpack(set))
for i = 6 + 2 * k, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
pexpire_all(ARGV[3])
return {0, m[2] or '', redis.call('HGETALL', KEYS[1])}
