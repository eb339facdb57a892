-- Ends a leased job for good in the dead set, with its reason; the payload
-- stays for inspection and requeue. Only the lease holder may.
-- KEYS[1] leases zset, KEYS[2] deliveries hash, KEYS[3] dead zset (by
-- time), KEYS[4] reasons hash
-- ARGV[1] id, ARGV[2] lease token, ARGV[3] reason
-- Returns 1 dead, 0 the lease is not this copy's.
local now = q_now()
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id .. '|' .. ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('HSET', KEYS[4], id, ARGV[3])
return 1
