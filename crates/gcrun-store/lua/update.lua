-- Sets fields of an existing run; never recreates an expired one.
-- KEYS[1] run hash; ARGV field/value pairs. Returns 1, or 0 when gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
