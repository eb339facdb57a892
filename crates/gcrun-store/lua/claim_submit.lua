-- Claims the right to submit a validated run for ARGV[1] ms, for the copy
-- named ARGV[2], unless another copy holds an unexpired claim: two copies
-- of one submit job must never both call Genesys. A claim whose holder
-- marked the call as sent (`submit_sent_ms`, see mark_submit.lua) and
-- that lapsed while the run is still validated means the call's outcome
-- is unknown: it may have run, its answer never recorded. That is
-- reported, not claimed again.
-- Times are Redis's own (TIME): one worker's fast or slow clock can
-- neither expire a live claim nor keep a dead one.
-- KEYS[1] run hash; ARGV[1] hold_ms, ARGV[2] token
-- Returns {1, hold_ms} claimed, {0, ms_left} held, {-1, 0} not
-- validated, {-2, sent_ms} sent without an answer.
-- One read of the three fields (HMGET), not three.
local f = redis.call('HMGET', KEYS[1], 'status', 'submit_claim_until', 'submit_sent_ms')
if f[1] ~= 'validated' then return {-1, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = tonumber(f[2] or '0')
if held > now then return {0, held - now} end
local sent = tonumber(f[3] or '0')
if sent > 0 then return {-2, sent} end
redis.call('HSET', KEYS[1], 'submit_claim_until', now + tonumber(ARGV[1]), 'submit_claim_by', ARGV[2])
return {1, tonumber(ARGV[1])}
