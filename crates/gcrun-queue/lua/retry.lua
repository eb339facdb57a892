-- Gives a leased job back, due again after ARGV[3] ms (an infrastructure
-- error: the step did not run to its end). Only the lease holder may.
-- KEYS[1] leases zset, KEYS[2] deliveries hash, KEYS[3] scheduled zset
-- ARGV[1] id, ARGV[2] lease token, ARGV[3] delay_ms, ARGV[4] '1' when the
-- job did not run at all (given back at shutdown, or left for a newer
-- release): that delivery does not count towards the poison-job cap,
-- ARGV[5] the queue's wake channel
-- Returns 1 rescheduled, 0 the lease is not this copy's.
local now, up = q_clock()
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id .. '|' .. ARGV[2]) == 0 then return 0 end
if ARGV[4] ~= '1' then redis.call('HINCRBY', KEYS[2], id, 1) end
local delay = tonumber(ARGV[3])
local due = delay > 0 and up + delay or now
if q_schedule(KEYS[3], {due, id}, due) then redis.call('PUBLISH', ARGV[5], 1) end
return 1
