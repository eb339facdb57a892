-- Gives a concurrency lease back and wakes the run that has waited longest
-- for one: the caller pushes a submit job for the run this returns, so a
-- slot freed is taken at once instead of when some waiter looks again.
-- KEYS[1] leases zset, KEYS[2] waiting zset (run ids by when they began to
-- wait)
-- ARGV[1] the lease (the run id)
-- Returns the woken run's id, or false when nobody waits or no slot was
-- freed (a run that held none wakes nobody: a slot would not be there).
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local first = redis.call('ZPOPMIN', KEYS[2])
return first[1] or false
