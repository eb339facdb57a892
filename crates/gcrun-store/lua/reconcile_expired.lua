-- Takes one ended run whose record expired out of the counts and the
-- indexes, once: only if its record is really gone and this call is the
-- one that removes it from the expiring index (two sweepers, or a purge,
-- racing over the same run decrement the count once).
-- KEYS[1] run hash, KEYS[2] expiring zset, KEYS[3] counts hash, KEYS[4]
-- dlq zset, KEYS[5] webhook dlq zset, KEYS[6] open zset, KEYS[7] runs zset,
-- KEYS[8] trimmed hash (status -> runs retention dropped)
-- ARGV[1] the expiring member ('<status>|<id>'), ARGV[2] status, ARGV[3] id
-- Returns 1 reconciled, 0 nothing to do (yet).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[3], ARGV[2], -1)
  redis.call('HINCRBY', KEYS[8], ARGV[2], 1)
end
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
redis.call('ZREM', KEYS[6], ARGV[3])
redis.call('ZREM', KEYS[7], ARGV[3])
return 1
