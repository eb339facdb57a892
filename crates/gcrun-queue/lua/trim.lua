-- Forgets ids finished (or dead) more than ARGV[1] ms ago, at most ARGV[2]
-- per call: retention in bounded slices. Their marker or payload, reason
-- and failure count go with them.
-- KEYS[1] the done or dead zset, KEYS[2] jobs hash, KEYS[3] reasons hash,
-- KEYS[4] deliveries hash
-- ARGV[1] retention ms, ARGV[2] max
-- Returns the number forgotten.
local now = q_now()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(ids))
  redis.call('HDEL', KEYS[3], unpack(ids))
  redis.call('HDEL', KEYS[4], unpack(ids))
end
return #ids
