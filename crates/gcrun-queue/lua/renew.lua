-- Extends the lease of a job that is still running, if this copy holds it.
-- KEYS[1] leases zset
-- ARGV[1] id, ARGV[2] lease token, ARGV[3] lease ms from now
-- Returns 1 renewed, 0 the lease is gone or not this copy's.
local member = ARGV[1] .. '|' .. ARGV[2]
if not redis.call('ZSCORE', KEYS[1], member) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', q_now() + tonumber(ARGV[3]), member)
return 1
