-- Forgets ids finished (or dead) more than ARGV[1] ms ago, at most ARGV[2]
-- per call: retention in bounded slices. Dead jobs lose their payload and
-- reason too.
-- KEYS[1] the done or dead zset, KEYS[2] jobs hash, KEYS[3] reasons hash
-- ARGV[1] retention ms, ARGV[2] max
-- Returns the number forgotten.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return #ids
