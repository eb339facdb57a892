-- Extends a concurrency lease to ARGV[2] ms from now by Redis's clock
-- (adding it back if a long server-requested wait let it lapse: the run is
-- still in progress).
-- KEYS[1] leases zset; ARGV[1] lease, ARGV[2] ttl_ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
