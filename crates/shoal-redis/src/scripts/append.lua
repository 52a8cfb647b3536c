-- append: ARGV[2] = new expires_at, ARGV[3] = PEXPIRE ms, ARGV[4] = max frames retained,
-- ARGV[5] = the session's byte budget, ARGV[6] = a bound on the metadata's stored bytes (when
-- frames and pending requests leave that much room the metadata is not measured),
-- ARGV[7] = 1 to record frame epochs (0: every frame's epoch is 0, not known),
-- ARGV[8] = the encoded-frame prefix up to the seq value, ARGV[9..] = for each frame the
-- encoded bytes after the seq value. Each stored frame is prefix .. seq .. suffix, where seq
-- comes from meta's field a (read and written inside this script, so seqs are totally ordered
-- across every writer). The budget counts what the session holds after the frames trimmed by
-- the retention bound are gone; over it, nothing is written.
-- With the feed, one 'frame' entry per frame (detail: one line each).
-- Reply: {0, epoch, seq1, seq2, ...} (the frames' epoch, see epoch_for_append; 0 when no
-- frame was given), or {-5} over the budget.
local t, r = load_live(now)
if not t then
  return r
end
local k = #ARGV - 8
local last = t[4]
local out = {0, 0}
local max = tonumber(ARGV[4])
local items = {}
local n
local b
if k > 0 then
  local prefix = ARGV[8]
  local incoming = 0
  for i = 1, k do
    local seq = last + i
    items[i] = prefix .. mp_uint(seq) .. ARGV[8 + i]
    incoming = incoming + #items[i]
    out[i + 2] = seq
  end
  local budget = tonumber(ARGV[5])
  b = stored_bytes() + incoming
  -- Only a session near its budget pays for measuring what trimming and metadata take.
  if b + tonumber(ARGV[6]) > budget then
    -- What the retention bound trims in this append no longer counts.
    local len = redis.call('LLEN', KEYS[2])
    local drop = len + k - max
    local dropped = 0
    if drop > 0 then
      local old = math.min(drop, len)
      if old > 0 then
        local gone = redis.call('LRANGE', KEYS[2], 0, old - 1)
        for i = 1, #gone do
          dropped = dropped + #gone[i]
        end
      end
      for i = 1, drop - old do
        dropped = dropped + #items[i]
      end
    end
    if b - dropped + meta_bytes() > budget then
      return {-5}
    end
  end
  last = last + k
  n = rpush_all(items)
  if n ~= t[6] + k then
    -- The list lost entries meta still counts (eviction): remove the session (this push
    -- with it) and report it, rather than heal the counters over a hole in the history.
    return evicted('frames', n - k, t[6] .. ' retained frames')
  end
  if ARGV[7] == '1' then
    out[2] = epoch_for_append(last - k + 1)
  end
  -- One entry per frame, in seq order; the detail has one line per frame (none: the feed
  -- carries no frames).
  local detail = feed and feed_header().detail or ''
  if detail ~= '' then
    if k == 1 then
      feed_add('frame', 'q', out[3], 'x', detail)
    else
      local i = 0
      for line in string.gmatch(detail, '[^\n]+') do
        i = i + 1
        if i > k then
          break
        end
        feed_add('frame', 'q', out[i + 2], 'x', line)
      end
    end
  end
end
-- Without frames to push, LLEN reads the length (and fails with WRONGTYPE, before anything
-- is written, if the key is not a list; with frames RPUSH does both).
n = n or redis.call('LLEN', KEYS[2])
-- RPUSH made the list (it has no TTL yet) when the list holds only this batch.
local fresh = k > 0 and n == k
if n > max then
  -- The trimmed entries' bytes leave the count (read only when something is trimmed).
  b = b or stored_bytes()
  local gone = redis.call('LRANGE', KEYS[2], 0, n - max - 1)
  for i = 1, #gone do
    b = b - #gone[i]
  end
  if max == 0 then
    redis.call('DEL', KEYS[2])
  else
    redis.call('LTRIM', KEYS[2], n - max, -1)
  end
  n = max
end
t[1] = now
t[2] = tonumber(ARGV[2])
t[4] = last
t[5] = last - n + 1
t[6] = n
if b then
  redis.call('HSET', KEYS[1], 'a', pack_a(t), 'b', math.max(b, 0))
else
  redis.call('HSET', KEYS[1], 'a', pack_a(t))
end
slide_ttl(fresh)
return out
