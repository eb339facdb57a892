-- Finishes a leased job and pushes the jobs that follow it, in one script:
-- there is no moment where a step is done and its successor missing. Only
-- the copy that holds the current lease (its delivery count) may finish
-- it; a copy whose lease lapsed finds it taken and changes nothing.
-- KEYS[1] leases zset, KEYS[2] jobs hash, KEYS[3] deliveries hash,
-- KEYS[4] done zset of this queue; then, for each of the three queues
-- (submit, poll, webhook) in that order, its jobs hash, scheduled zset,
-- ready list, done zset and dead zset: KEYS[5..19]
-- ARGV[1] id, ARGV[2] delivery, ARGV[3..5] the three queues' wake
-- channels, then successors as (queue index 0..2, id, payload, delay_ms)
-- quadruples; a successor ready now is announced on its queue's channel
-- Returns 1 finished, 0 the lease is not this copy's.
-- Times are Redis's own (TIME), never a worker's clock: a lease or a due
-- time means the same to every worker, whatever their clocks or a stalled
-- connection say.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
if redis.call('HGET', KEYS[3], id) ~= ARGV[2] or not redis.call('ZSCORE', KEYS[1], id) then return 0 end
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
redis.call('ZADD', KEYS[4], now, id)
local woken = {}
for i = 6, #ARGV, 4 do
  local base = 5 + tonumber(ARGV[i]) * 5
  local sid, payload, due = ARGV[i + 1], ARGV[i + 2], now + tonumber(ARGV[i + 3])
  if redis.call('HEXISTS', KEYS[base], sid) == 0
    and not redis.call('ZSCORE', KEYS[base + 3], sid)
    and not redis.call('ZSCORE', KEYS[base + 4], sid) then
    redis.call('HSET', KEYS[base], sid, payload)
    if due <= now then
      redis.call('RPUSH', KEYS[base + 2], sid)
      woken[ARGV[3 + tonumber(ARGV[i])]] = true
    else
      redis.call('ZADD', KEYS[base + 1], due, sid)
    end
  end
end
for channel in pairs(woken) do redis.call('PUBLISH', channel, 1) end
return 1
