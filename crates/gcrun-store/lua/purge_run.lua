-- Deletes a dead-lettered run, checked here and not when it was listed:
-- a run an operator requeued meanwhile (so no longer rejected or dead) is
-- left alone.
-- KEYS[1] run hash, KEYS[2] history list, KEYS[3] dlq zset, KEYS[4] open
-- zset, KEYS[5] counts hash, KEYS[6] expiring zset, KEYS[7] runs zset
-- ARGV[1] run id
-- Returns 1 deleted, 0 not dead-lettered (any more).
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'rejected' and status ~= 'dead' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], status, -1)
redis.call('ZREM', KEYS[6], status .. '|' .. ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
return 1
