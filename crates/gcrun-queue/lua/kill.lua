-- Ends a job for good in the dead set, with its reason; the payload stays
-- for inspection. A leased job needs the lease holder's delivery count;
-- ARGV[2] = '' kills a job that was never leased (it did not decode).
-- KEYS[1] leases zset, KEYS[2] deliveries hash, KEYS[3] dead zset (by
-- time), KEYS[4] reasons hash, KEYS[5] ready list, KEYS[6] scheduled zset
-- ARGV[1] id, ARGV[2] delivery or '', ARGV[3] reason
-- Returns 1 dead, 0 the lease is not this copy's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[2], id) ~= ARGV[2] or not redis.call('ZSCORE', KEYS[1], id)) then
  return 0
end
redis.call('ZREM', KEYS[1], id)
-- Never also waiting somewhere: a dead job must not be fetched again.
redis.call('LREM', KEYS[5], 0, id)
redis.call('ZREM', KEYS[6], id)
redis.call('HDEL', KEYS[2], id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('HSET', KEYS[4], id, ARGV[3])
return 1
