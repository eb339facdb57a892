-- Counts a queue's jobs by state, with the age of the oldest ready job.
-- KEYS[1] ready list, KEYS[2] scheduled zset, KEYS[3] leases zset,
-- KEYS[4] dead zset, KEYS[5] done zset
-- Returns {ready, scheduled, leased, dead, done, oldest ready age ms or -1}.
local now = q_now()
local head = redis.call('LINDEX', KEYS[1], 0)
local age = -1
if head then
  local since = tonumber(string.match(head, '^(%d+)|'))
  age = since and math.max(0, now - since) or 0
end
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]), age}
