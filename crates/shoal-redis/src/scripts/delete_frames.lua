-- delete_frames: ARGV[2] = through_seq (<= 2^53), or '' for all. Seqs keep counting.
-- Reply: {0, frames removed}.
local t, r = load_live(now)
if not t then
  return r
end
local first, last = t[5], t[4]
local n = redis.call('LLEN', KEYS[2])
local gone = n
if ARGV[2] ~= '' then
  gone = tonumber(ARGV[2]) + 1 - first
  if gone < 0 then
    gone = 0
  end
  if gone > n then
    gone = n
  end
end
if gone > 0 then
  local dropped = 0
  local removed = redis.call('LRANGE', KEYS[2], 0, gone - 1)
  for i = 1, #removed do
    dropped = dropped + #removed[i]
  end
  local b = stored_bytes() - dropped
  if b < 0 then
    b = 0
  end
  redis.call('HSET', KEYS[1], 'b', b)
end
if gone >= n then
  redis.call('DEL', KEYS[2])
elseif gone > 0 then
  redis.call('LTRIM', KEYS[2], gone, -1)
end
n = n - gone
t[5] = last - n + 1
t[6] = n
redis.call('HSET', KEYS[1], 'a', pack_a(t))
return {0, gone}
