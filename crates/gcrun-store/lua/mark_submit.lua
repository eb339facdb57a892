-- Marks the moment just before the Genesys call, for the copy that holds
-- the claim (ARGV[1], its token), and extends the claim to cover the call
-- (ARGV[2] ms from now). From here on, a claim that lapses without an
-- outcome means the outcome is unknown (claim_submit.lua). Times are
-- Redis's own (TIME).
-- KEYS[1] run hash; ARGV[1] token, ARGV[2] hold_ms
-- Returns 1 marked, 0 the claim is no longer this copy's (or the run
-- moved on).
local f = redis.call('HMGET', KEYS[1], 'status', 'submit_claim_by', 'submit_claim_until')
if f[1] ~= 'validated' then return 0 end
if f[2] ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(f[3] or '0') <= now then return 0 end
redis.call('HSET', KEYS[1], 'submit_sent_ms', now, 'submit_claim_until', now + tonumber(ARGV[2]))
return 1
