-- Operators' purge of dead jobs: each listed job that is still dead (checked
-- here, not when it was listed) is dropped; its id stays a done marker for
-- the retention window. At most a bounded number of ids per call.
-- KEYS[1] dead zset, KEYS[2] reasons hash, KEYS[3] jobs hash, KEYS[4] done
-- zset, KEYS[5] deliveries hash
-- ARGV ids
-- Returns the number purged.
local now = q_now()
local n = 0
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HSET', KEYS[3], id, '')
    redis.call('ZADD', KEYS[4], now, id)
    n = n + 1
  end
end
return n
