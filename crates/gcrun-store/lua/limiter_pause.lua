-- Tells every worker of a client to wait ARGV[1] ms from now (by Redis's
-- clock), unless a later pause is already set; the key expires with the
-- pause.
-- KEYS[1] pause-until; ARGV[1] px
-- Returns 1 set, 0 a later pause stands.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local px = math.max(tonumber(ARGV[1]), 1)
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + px > cur then redis.call('SET', KEYS[1], now + px, 'PX', px) return 1 end
return 0
