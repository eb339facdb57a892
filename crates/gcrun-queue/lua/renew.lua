-- Extends the lease of a job that is still running, if this copy holds it.
-- KEYS[1] leases zset, KEYS[2] deliveries hash
-- ARGV[1] id, ARGV[2] delivery, ARGV[3] lease ms from now
-- Returns 1 renewed, 0 the lease is gone or not this copy's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
