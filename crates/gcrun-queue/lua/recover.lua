-- Returns jobs whose lease expired (their worker died or hung) to the
-- front of the ready list, at most ARGV[1] per call, counting the lost
-- delivery. No worker heartbeat is needed: the lease is the job's own.
-- KEYS[1] leases zset, KEYS[2] ready list, KEYS[3] deliveries hash
-- ARGV[1] max, ARGV[2] the queue's wake channel
-- Returns the number recovered.
local now = q_now()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
for i = 1, #expired, 2 do
  local id = q_lease_id(expired[i])
  redis.call('ZREM', KEYS[1], expired[i])
  redis.call('HINCRBY', KEYS[3], id, 1)
  -- Ready since its lease ran out.
  redis.call('LPUSH', KEYS[2], math.floor(tonumber(expired[i + 1])) .. '|' .. id)
end
if #expired > 0 then redis.call('PUBLISH', ARGV[2], 1) end
return #expired / 2
