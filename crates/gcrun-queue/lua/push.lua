-- Pushes jobs to one queue, each at most once: a job whose id the queue
-- holds (pending, leased, remembered as done, or dead) is skipped, so a
-- step can always be pushed again and never makes a second copy.
-- KEYS[1] jobs hash (id -> payload), KEYS[2] scheduled zset (by due ms),
-- KEYS[3] ready list, KEYS[4] done zset (by done ms), KEYS[5] dead zset
-- ARGV: (id, payload, delay_ms) triples; the caller sends at most a bounded
-- number of triples per call.
-- Returns the number of jobs added.
-- Times are Redis's own (TIME), never a worker's clock: a lease or a due
-- time means the same to every worker, whatever their clocks or a stalled
-- connection say.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = 0
for i = 1, #ARGV, 3 do
  local id, payload, due = ARGV[i], ARGV[i + 1], now + tonumber(ARGV[i + 2])
  if redis.call('HEXISTS', KEYS[1], id) == 0
    and not redis.call('ZSCORE', KEYS[4], id)
    and not redis.call('ZSCORE', KEYS[5], id) then
    redis.call('HSET', KEYS[1], id, payload)
    if due <= now then
      redis.call('RPUSH', KEYS[3], id)
    else
      redis.call('ZADD', KEYS[2], due, id)
    end
    added = added + 1
  end
end
return added
