-- Sets fields of an existing run; never recreates an expired one.
-- KEYS[1] run hash; ARGV field/value pairs. Returns 1, or 0 when gone.
-- A fragment: defines `s_update(KEYS, ARGV)`; the store runs it alone, the
-- worker's step script beside the engine's ack (see ARCHITECTURE.md).
local function s_update(KEYS, ARGV)
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  redis.call('HSET', KEYS[1], unpack(ARGV))
  return 1
end
