-- Promotes due jobs and leases a batch, in bounded work: at most ARGV[1]
-- due jobs move from scheduled to ready per call (no backlog size can make
-- a call fail or take long), then at most ARGV[2] ready jobs are leased
-- until now + ARGV[3]. A lease is named by the job's delivery count, so an
-- acknowledgement from a copy whose lease lapsed and was taken again is
-- told apart.
-- KEYS[1] scheduled zset, KEYS[2] ready list, KEYS[3] leases zset (by
-- expiry ms), KEYS[4] jobs hash, KEYS[5] deliveries hash (id -> count)
-- ARGV[1] promote max, ARGV[2] batch, ARGV[3] lease ms
-- Returns {ms until the next scheduled job is due or -1, id1, payload1,
-- delivery1, id2, ...}.
-- Times are Redis's own (TIME), never a worker's clock: a lease or a due
-- time means the same to every worker, whatever their clocks or a stalled
-- connection say.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('RPUSH', KEYS[2], id)
end
local out = {-1}
local until_ms = now + tonumber(ARGV[3])
for _ = 1, tonumber(ARGV[2]) do
  local id = redis.call('LPOP', KEYS[2])
  if not id then break end
  local payload = redis.call('HGET', KEYS[4], id)
  -- An id without a payload was acknowledged or killed meanwhile: skip it.
  if payload then
    redis.call('ZADD', KEYS[3], until_ms, id)
    local delivery = redis.call('HINCRBY', KEYS[5], id, 1)
    out[#out + 1] = id
    out[#out + 1] = payload
    out[#out + 1] = delivery
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[1] = math.max(0, tonumber(first[2]) - now) end
return out
