-- Renews the claim over a call in flight, for the copy that holds it (its
-- token): a live worker keeps its claim for as long as the call takes; a
-- dead one's lapses within one claim period.
-- KEYS[1] run hash; ARGV[1] token, ARGV[2] until_ms
-- Returns 1 renewed, 0 the claim is not this copy's (or the run moved on).
if redis.call('HGET', KEYS[1], 'status') ~= 'validated' then return 0 end
if redis.call('HGET', KEYS[1], 'submit_claim_by') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'submit_claim_until', ARGV[2])
return 1
