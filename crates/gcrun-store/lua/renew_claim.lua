-- Renews the claim over a call in flight, for the copy that holds it (its
-- token), to ARGV[2] ms from now by Redis's clock: a live worker keeps its
-- claim for as long as the call takes; a dead one's lapses within one
-- claim period.
-- KEYS[1] run hash; ARGV[1] token, ARGV[2] hold_ms
-- Returns 1 renewed, 0 the claim is not this copy's (or the run moved on).
if redis.call('HGET', KEYS[1], 'status') ~= 'validated' then return 0 end
if redis.call('HGET', KEYS[1], 'submit_claim_by') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'submit_claim_until', now + tonumber(ARGV[2]))
return 1
