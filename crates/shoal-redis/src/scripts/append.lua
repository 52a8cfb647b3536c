-- append: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] = max frames retained,
-- ARGV[5] = the encoded-frame prefix up to the seq value, ARGV[6..] = for each frame the
-- encoded bytes after the seq value. Each stored frame is prefix .. seq .. suffix, where seq
-- comes from meta's field a (read and written inside this script, so seqs are totally
-- ordered across every writer). Reply: {0, seq1, seq2, ...}.
local t, r = load_live(now)
if not t then
  return r
end
local k = #ARGV - 5
local last = t[4]
local out = {0}
local n
if k > 0 then
  last = last + k
  local prefix = ARGV[5]
  local items = {}
  for i = 1, k do
    local seq = last - k + i
    items[i] = prefix .. mp_uint(seq) .. ARGV[5 + i]
    out[i + 1] = seq
  end
  n = rpush_all(items)
end
local max = tonumber(ARGV[4])
-- Without frames to push, LLEN reads the length (and fails with WRONGTYPE, before anything
-- is written, if the key is not a list; with frames RPUSH does both).
n = n or redis.call('LLEN', KEYS[2])
-- RPUSH made the list (it has no TTL yet) when the list holds only this batch.
local fresh = k > 0 and n == k
if n > max then
  if max == 0 then
    redis.call('DEL', KEYS[2])
  else
    redis.call('LTRIM', KEYS[2], n - max, -1)
  end
  n = max
end
t[1] = tonumber(ARGV[1])
t[2] = tonumber(ARGV[2])
t[4] = last
t[5] = last - n + 1
t[6] = n
redis.call('HSET', KEYS[1], 'a', pack_a(t))
slide_ttl(fresh)
return out
