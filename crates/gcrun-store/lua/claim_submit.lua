-- Claims the right to submit a validated run until ARGV[2], unless another
-- worker holds an unexpired claim: two copies of one submit job must
-- never both call Genesys.
-- KEYS[1] run hash; ARGV[1] now_ms, ARGV[2] until_ms
-- Returns {1, until} claimed, {0, held_until} held, {-1, 0} not validated.
if redis.call('HGET', KEYS[1], 'status') ~= 'validated' then return {-1, 0} end
local held = tonumber(redis.call('HGET', KEYS[1], 'submit_claim_until') or '0')
if held > tonumber(ARGV[1]) then return {0, held} end
redis.call('HSET', KEYS[1], 'submit_claim_until', ARGV[2])
return {1, tonumber(ARGV[2])}
