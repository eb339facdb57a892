-- Returns jobs whose lease expired (their worker died or hung) to the
-- front of the ready list, at most ARGV[2] per call. No worker heartbeat
-- is needed: the lease is the job's own.
-- KEYS[1] leases zset, KEYS[2] ready list
-- ARGV[1] max
-- Returns the number recovered.
-- Times are Redis's own (TIME), never a worker's clock: a lease or a due
-- time means the same to every worker, whatever their clocks or a stalled
-- connection say.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('LPUSH', KEYS[2], id)
end
return #ids
