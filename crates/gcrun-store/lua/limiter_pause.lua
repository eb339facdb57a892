-- Tells every worker of a client to wait until ARGV[1], unless a later
-- pause is already set; the key expires with the pause.
-- KEYS[1] pause-until; ARGV[1] until_ms, ARGV[2] px (ms from now)
-- Returns 1 set, 0 a later pause stands.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
