-- Puts a run on the list of runs waiting for a concurrency slot, scored by
-- when it began to wait by Redis's clock (once: a run that waits again
-- keeps its place), so the longest waiter across every pod is woken first.
-- KEYS[1] waiting zset; ARGV[1] run
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
