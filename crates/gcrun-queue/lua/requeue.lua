-- Operators' requeue of dead jobs: each listed job that is still dead runs
-- again under a fresh id (its payload as it was), ready now; the old id is
-- kept as a done marker for the retention window, so a late push of it
-- stays a no-op. At most a bounded number of pairs per call (the caller's).
-- KEYS[1] dead zset, KEYS[2] reasons hash, KEYS[3] jobs hash, KEYS[4] done
-- zset, KEYS[5] deliveries hash, KEYS[6] scheduled zset, KEYS[7] ready list
-- ARGV[1] wake channel, then (old id, new id) pairs
-- Returns the number requeued.
local now = q_now()
local jobs = {}
for i = 2, #ARGV, 2 do
  local old, new = ARGV[i], ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[1], old) then
    local payload = redis.call('HGET', KEYS[3], old)
    redis.call('ZREM', KEYS[1], old)
    redis.call('HDEL', KEYS[2], old)
    redis.call('HDEL', KEYS[5], old)
    redis.call('HSET', KEYS[3], old, '')
    redis.call('ZADD', KEYS[4], now, old)
    if payload and payload ~= '' then jobs[#jobs + 1] = {new, payload, 0} end
  end
end
if #jobs == 0 then return 0 end
return q_push(KEYS[3], KEYS[6], KEYS[7], ARGV[1], now, now, jobs)
