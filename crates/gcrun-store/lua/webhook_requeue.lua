-- An operator's requeue of a dead webhook: back to pending with no
-- attempts and a new epoch, so its delivery chain gets job ids the queue
-- has not seen, and out of the webhook dead-letter index.
-- KEYS[1] run hash, KEYS[2] webhook dead-letter zset, KEYS[3]
-- webhooks-owed zset (owed again, from now by Redis's clock)
-- ARGV[1] run id
-- Returns the new epoch, 0 when the webhook is not dead, -1 no such run.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return -1
end
if redis.call('HGET', KEYS[1], 'webhook_status') ~= 'dead' then return 0 end
redis.call('HSET', KEYS[1], 'webhook_status', 'pending', 'webhook_attempts', '0')
local epoch = redis.call('HINCRBY', KEYS[1], 'webhook_epoch', 1)
redis.call('ZREM', KEYS[2], ARGV[1])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return epoch
