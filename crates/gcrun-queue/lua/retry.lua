-- Gives a leased job back, due again after ARGV[3] ms (an infrastructure
-- error: the step did not run to its end). Only the lease holder may.
-- KEYS[1] leases zset, KEYS[2] deliveries hash, KEYS[3] scheduled zset
-- ARGV[1] id, ARGV[2] delivery, ARGV[3] delay_ms, ARGV[4] '1' when the job
-- did not run at all (given back at shutdown, or left for a newer
-- release): that delivery does not count towards the poison-job cap
-- Returns 1 rescheduled, 0 the lease is not this copy's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
if redis.call('HGET', KEYS[2], id) ~= ARGV[2] or not redis.call('ZSCORE', KEYS[1], id) then return 0 end
redis.call('ZREM', KEYS[1], id)
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], id, -1) end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), id)
return 1
