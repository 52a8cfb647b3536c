-- frames: ARGV[2] = after_seq (<= 2^53), ARGV[3] = how many list entries to read.
-- Reply: {0, first_seq, last_seq, retained count, {entries with seq > after_seq ...}}.
local t, r = load_live(now)
if not t then
  return r
end
local first, last = t[5], t[4]
local start = tonumber(ARGV[2]) + 1
if start < first then
  start = first
end
local count = tonumber(ARGV[3])
local n = redis.call('LLEN', KEYS[2])
local items = {}
if start <= last and count > 0 then
  local idx = start - first
  items = redis.call('LRANGE', KEYS[2], idx, idx + count - 1)
end
return {0, first, last, n, items}
