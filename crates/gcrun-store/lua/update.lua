-- Sets fields of an existing run; never recreates an expired one. With a
-- guard (ARGV[1] a field, ARGV[2] its value; '' for none), only while that
-- field holds that value: a copy gives back only its own submit claim.
-- KEYS[1] run hash; ARGV[1] guard field, ARGV[2] guard value, ARGV[3..]
-- field/value pairs.
-- Returns 1, 0 when gone, 2 when the guard does not hold.
-- A fragment: defines `s_update(KEYS, ARGV)`; the store runs it alone, the
-- worker's step script beside the engine's ack (see ARCHITECTURE.md).
local function s_update(KEYS, ARGV)
  -- Every record has a status: none means no record. One HMGET reads it
  -- and the guard.
  local f = redis.call('HMGET', KEYS[1], 'status', ARGV[1] ~= '' and ARGV[1] or 'status')
  if not f[1] then return 0 end
  if ARGV[1] ~= '' and f[2] ~= ARGV[2] then return 2 end
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  return 1
end
