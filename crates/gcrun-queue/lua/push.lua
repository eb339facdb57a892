-- Pushes jobs to one queue, each at most once: a job whose id the queue
-- holds (pending, leased, remembered as done, or dead) is skipped, so a
-- step can always be pushed again and never makes a second copy.
-- KEYS[1] jobs hash (id -> payload), KEYS[2] scheduled zset (by due ms),
-- KEYS[3] ready list, KEYS[4] done zset (by done ms), KEYS[5] dead zset
-- ARGV[1] the queue's wake channel, then (id, payload, delay_ms) triples;
-- the caller sends at most a bounded number of triples per call. A job
-- ready now is announced on the wake channel, so idle workers of every
-- process fetch at once instead of waiting for their next look.
-- Returns the number of jobs added.
-- Times are Redis's own (TIME), never a worker's clock: a lease or a due
-- time means the same to every worker, whatever their clocks or a stalled
-- connection say.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added, ready = 0, 0
for i = 2, #ARGV, 3 do
  local id, payload, due = ARGV[i], ARGV[i + 1], now + tonumber(ARGV[i + 2])
  if redis.call('HEXISTS', KEYS[1], id) == 0
    and not redis.call('ZSCORE', KEYS[4], id)
    and not redis.call('ZSCORE', KEYS[5], id) then
    redis.call('HSET', KEYS[1], id, payload)
    if due <= now then
      redis.call('RPUSH', KEYS[3], id)
      ready = ready + 1
    else
      redis.call('ZADD', KEYS[2], due, id)
    end
    added = added + 1
  end
end
if ready > 0 then redis.call('PUBLISH', ARGV[1], ready) end
return added
