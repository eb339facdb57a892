-- Marks the moment just before the Genesys call, for the copy that holds
-- the claim (ARGV[2], its token), and extends the claim to cover the call
-- (ARGV[3]). From here on, a claim that lapses without an outcome means
-- the outcome is unknown (claim_submit.lua).
-- KEYS[1] run hash; ARGV[1] now_ms, ARGV[2] token, ARGV[3] until_ms
-- Returns 1 marked, 0 the claim is no longer this copy's (or the run
-- moved on).
if redis.call('HGET', KEYS[1], 'status') ~= 'validated' then return 0 end
if redis.call('HGET', KEYS[1], 'submit_claim_by') ~= ARGV[2] then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'submit_claim_until') or '0') <= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'submit_sent_ms', ARGV[1], 'submit_claim_until', ARGV[3])
return 1
