-- Claims the right to submit a validated run until ARGV[2], for the copy
-- named ARGV[3], unless another copy holds an unexpired claim: two copies
-- of one submit job must never both call Genesys. A claim whose holder
-- marked the call as sent (`submit_sent_ms`, see mark_submit.lua) and
-- that lapsed while the run is still validated means the call's outcome
-- is unknown: it may have run, its answer never recorded. That is
-- reported, not claimed again.
-- KEYS[1] run hash; ARGV[1] now_ms, ARGV[2] until_ms, ARGV[3] token
-- Returns {1, until} claimed, {0, held_until} held, {-1, 0} not
-- validated, {-2, sent_ms} sent without an answer.
if redis.call('HGET', KEYS[1], 'status') ~= 'validated' then return {-1, 0} end
local held = tonumber(redis.call('HGET', KEYS[1], 'submit_claim_until') or '0')
if held > tonumber(ARGV[1]) then return {0, held} end
local sent = tonumber(redis.call('HGET', KEYS[1], 'submit_sent_ms') or '0')
if sent > 0 then return {-2, sent} end
redis.call('HSET', KEYS[1], 'submit_claim_until', ARGV[2], 'submit_claim_by', ARGV[3])
return {1, tonumber(ARGV[2])}
