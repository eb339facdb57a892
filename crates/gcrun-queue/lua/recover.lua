-- Returns jobs whose lease expired (their worker died or hung) to the
-- front of the ready list, at most ARGV[2] per call. No worker heartbeat
-- is needed: the lease is the job's own.
-- KEYS[1] leases zset, KEYS[2] ready list
-- ARGV[1] now_ms, ARGV[2] max
-- Returns the number recovered.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('LPUSH', KEYS[2], id)
end
return #ids
