-- append: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] = max frames retained,
-- ARGV[5] = the encoded-frame prefix up to the seq value, ARGV[6..] = for each frame the
-- encoded bytes after the seq value. Each stored frame is prefix .. seq .. suffix, where seq
-- comes from HINCRBY on meta, so seqs are totally ordered across every writer.
-- Reply: {0, seq1, seq2, ...}.
local r = check_live(now)
if r then
  return r
end
local first, last = seq_range()
if not first then
  return {-9, last}
end
-- Fails (WRONGTYPE) before anything is written if the frames key is not a list.
redis.call('LLEN', KEYS[2])
local k = #ARGV - 5
local out = {0}
if k > 0 then
  last = redis.call('HINCRBY', KEYS[1], 'seq', k)
  local prefix = ARGV[5]
  local items = {}
  for i = 1, k do
    local seq = last - k + i
    items[i] = prefix .. mp_uint(seq) .. ARGV[5 + i]
    out[i + 1] = seq
  end
  rpush_all(items)
end
local max = tonumber(ARGV[4])
local n = redis.call('LLEN', KEYS[2])
if n > max then
  if max == 0 then
    redis.call('DEL', KEYS[2])
  else
    redis.call('LTRIM', KEYS[2], n - max, -1)
  end
  n = max
end
redis.call('HSET', KEYS[1], 'first_seq', dec(last - n + 1), 'frame_count', dec(n),
  'last_activity', ARGV[1], 'expires_at', ARGV[2])
pexpire_all(ARGV[3])
return out
