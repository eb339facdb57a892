-- Pushes jobs to one queue, each at most once: a job whose id the queue
-- holds (pending, leased, remembered as done, or dead) is skipped, so a
-- step can always be pushed again and never makes a second copy.
-- KEYS[1] jobs hash (id -> payload), KEYS[2] scheduled zset (by due ms),
-- KEYS[3] ready list, KEYS[4] done zset (by done ms), KEYS[5] dead zset
-- ARGV[1] now_ms, then (id, payload, due_ms) triples; the caller sends at
-- most a bounded number of triples per call.
-- Returns the number of jobs added.
local now = tonumber(ARGV[1])
local added = 0
for i = 2, #ARGV, 3 do
  local id, payload, due = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
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
