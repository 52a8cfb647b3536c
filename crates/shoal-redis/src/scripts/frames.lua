-- frames: ARGV[2] = after_seq (<= 2^53), ARGV[3] = how many list entries to read,
-- ARGV[4] = most bytes of entries to return (at least one entry is returned), ARGV[5] = the
-- largest entry that may be stored. Entries are read in steps sized so that what this script
-- holds stays within ARGV[4] plus one entry, whatever the entries' sizes.
-- Reply: {0, first_seq, last_seq, retained count, {entries with seq > after_seq ...},
-- 1 if the byte bound stopped the read (else 0), the frame epochs (meta field e, '' if none)}.
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
local budget = tonumber(ARGV[4])
local biggest = math.max(1, tonumber(ARGV[5]))
local n = redis.call('LLEN', KEYS[2])
-- Meta counts the retained frames; a list shorter than that lost entries it never trimmed
-- (evicted under memory pressure, or removed by hand): never an empty page that looks whole.
if n ~= t[6] then
  return evicted('frames', n, t[6] .. ' retained frames')
end
local items = {}
local stopped = 0
if start <= last and count > 0 then
  local idx = start - first
  local stop = idx + count - 1
  local used = 0
  -- A session whose frames all fit in the bound is read in one step.
  local whole = tonumber(redis.call('HGET', KEYS[1], 'b') or '0') or 0
  while idx <= stop do
    local step = math.floor((budget - used) / biggest)
    step = math.max(1, math.min(step, 256, stop - idx + 1))
    if whole <= budget then
      step = stop - idx + 1
    end
    local got = redis.call('LRANGE', KEYS[2], idx, idx + step - 1)
    for i = 1, #got do
      local len = #got[i]
      if #items > 0 and used + len > budget then
        stopped = 1
        break
      end
      items[#items + 1] = got[i]
      used = used + len
    end
    if stopped == 1 or #got < step then
      break
    end
    idx = idx + step
  end
end
return {0, first, last, n, items, stopped, redis.call('HGET', KEYS[1], 'e') or ''}
