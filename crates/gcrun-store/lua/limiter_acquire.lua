-- Grants a permit of the shared limiter, or says how long until one is
-- expected: the pause first, then the concurrency leases (expired ones
-- dropped), then the GCRA rate. Re-asking for a lease already held is a
-- grant, so a re-delivered job does not count twice.
-- KEYS[1] GCRA theoretical arrival time, KEYS[2] leases zset (by expiry),
-- KEYS[3] pause-until, KEYS[4] waiting zset (a run granted a permit
-- leaves it, so a release never wakes a run that no longer waits),
-- KEYS[5] rate reservations zset (run by the moment its token is due, ms),
-- KEYS[6] granted zset (the permits of the last window, by grant ms)
-- ARGV[1] interval in microseconds, ARGV[2] burst, ARGV[3] max concurrent,
-- ARGV[4] lease ttl ms, ARGV[5] lease id, ARGV[6] the most permits in any
-- window, ARGV[7] the window ms
-- Times are Redis's own (TIME), never a worker's clock, so every pod sees
-- the same rate, the same lapsed leases and the same pause.
-- Returns {1, 0, 'granted' | 'held', woken} or {0, wait_ms, 'paused' |
-- 'concurrency' | 'rate', woken}: `woken`, the runs that waited longest for
-- a slot, one for each slot a lapsed lease (a dead worker's) freed and this
-- call did not take; the caller pushes a submit job for each, as a release
-- does, so a crashed worker's slots do not sit idle until the safety net.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local lease = ARGV[5]
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > now then return {0, pause - now, 'paused', {}} end
local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local function woken()
  if lapsed == 0 then return {} end
  local free = max - redis.call('ZCARD', KEYS[2])
  local n = math.min(lapsed, free)
  if n <= 0 then return {} end
  local out = {}
  local popped = redis.call('ZPOPMIN', KEYS[4], n)
  for i = 1, #popped, 2 do out[#out + 1] = popped[i] end
  return out
end
if redis.call('ZSCORE', KEYS[2], lease) then
  redis.call('ZREM', KEYS[4], lease)
  return {1, 0, 'held', woken()}
end
local held = redis.call('ZCARD', KEYS[2])
if held >= max then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local wait = 1000
  if first[2] then wait = math.min(wait, tonumber(first[2]) - now) end
  return {0, math.max(wait, 50), 'concurrency', {}}
end
-- The rate. A run told to wait for it gets a reservation: the moment it
-- conforms, with that token taken now. Each waiter is thus told a moment
-- of its own and comes back once, instead of every waiter coming back for
-- the next token and all but one being told to wait again.
local reserved = tonumber(redis.call('ZSCORE', KEYS[5], lease) or '-1')
if reserved >= 0 then
  if reserved > now then return {0, reserved - now, 'rate', woken()} end
  redis.call('ZREM', KEYS[5], lease)
else
  -- The theoretical arrival time, in microseconds (its own key: a release
  -- that kept it in milliseconds must never read this one).
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now_us then tat = now_us end
  local tolerance = interval * (burst - 1)
  local at_us = tat - tolerance
  local keep_ms = math.ceil((tat + interval - now_us + tolerance + interval) / 1000)
  redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', keep_ms)
  if at_us > now_us then
    -- Reservations of runs that never came back are dropped after a
    -- minute (their tokens are simply lost to the rate).
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 60000)
    local at = math.ceil(at_us / 1000)
    redis.call('ZADD', KEYS[5], at, lease)
    return {0, math.max(at - now, 1), 'rate', woken()}
  end
end
-- The cap: never more than ARGV[6] permits in any window, whatever the
-- burst let through. A run it stops is reserved the moment the oldest
-- permit leaves the window, and comes back then.
local limit, window = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - window)
if redis.call('ZCARD', KEYS[6]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
  local at = tonumber(oldest[2]) + window + 1
  redis.call('ZADD', KEYS[5], at, lease)
  return {0, math.max(at - now, 1), 'rate', woken()}
end
redis.call('ZADD', KEYS[6], now, string.format('%d', now_us) .. '|' .. lease)
redis.call('PEXPIRE', KEYS[6], window)
redis.call('ZADD', KEYS[2], now + ttl, lease)
redis.call('ZREM', KEYS[4], lease)
return {1, 0, 'granted', woken()}
