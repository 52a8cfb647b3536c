-- append: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] = max frames retained,
-- ARGV[5] = the encoded-frame prefix up to the seq value, ARGV[6..] = for each frame the
-- encoded bytes after the seq value. Each stored frame is prefix .. seq .. suffix, where seq
-- comes from the counters in meta (read and written inside this script, so seqs are totally
-- ordered across every writer). Reply: {0, seq1, seq2, ...}.
local c, r = load_live(now, true)
if not c then
  return r
end
-- Fails (WRONGTYPE) before anything is written if the frames key is not a list.
redis.call('LLEN', KEYS[2])
local k = #ARGV - 5
local last = c[2]
local out = {0}
if k > 0 then
  last = last + k
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
c[2] = last
c[3] = last - n + 1
c[4] = n
redis.call('HSET', KEYS[1], 'c', pack_c(c), 'a', ARGV[1] .. ':' .. ARGV[2])
pexpire_all(ARGV[3])
return out
