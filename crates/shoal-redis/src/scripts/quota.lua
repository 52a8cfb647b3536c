-- quota: one subject's admission quota (not a per-session script: no common.lua).
-- KEYS[1] = the live log (sorted set: member -> ms when it stops counting as live),
-- KEYS[2] = the recent log (sorted set: member -> ms when it was admitted); both carry the
-- subject's hash tag. Times are this server's clock (TIME), never the caller's.
-- ARGV[1] = 'admit' | 'release' | 'cancel', ARGV[2] = member,
-- admit: ARGV[3] = max_live (0: none), ARGV[4] = live_ttl ms, ARGV[5] = max_per_window (0: none),
--        ARGV[6] = window ms.
-- Reply: {1} done, {0} absent, {2, bound (1 live, 2 window), retry_after ms} refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, member = ARGV[1], ARGV[2]
if op == 'release' then
  local until_ms = redis.call('ZSCORE', KEYS[1], member)
  redis.call('ZREM', KEYS[1], member)
  if until_ms and tonumber(until_ms) > now then return {1} end
  return {0}
end
if op == 'cancel' then
  local until_ms = redis.call('ZSCORE', KEYS[1], member)
  local live = until_ms and tonumber(until_ms) > now
  redis.call('ZREM', KEYS[1], member)
  local recent = redis.call('ZREM', KEYS[2], member)
  if live or recent == 1 then return {1} end
  return {0}
end
local max_live, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_window, window = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], member) then return {1} end
if max_live > 0 and redis.call('ZCARD', KEYS[1]) >= max_live then
  local first = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return {2, 1, math.max(1, tonumber(first[2]) - now)}
end
if max_window > 0 and redis.call('ZCARD', KEYS[2]) >= max_window then
  local first = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return {2, 2, math.max(1, tonumber(first[2]) + window - now)}
end
redis.call('ZADD', KEYS[1], now + ttl, member)
redis.call('ZADD', KEYS[2], now, member)
-- The newest entry counts longest: each log lives as long as it.
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if redis.call('PTTL', KEYS[2]) < window then redis.call('PEXPIRE', KEYS[2], window) end
return {1}
