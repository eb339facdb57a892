-- Promotes due jobs and leases a batch, in bounded work: at most ARGV[1]
-- due jobs move from scheduled to ready per call (no backlog size can make
-- a call fail or take long), then at most ARGV[2] ready jobs are leased
-- until now + ARGV[3], all under one new lease token. A busy fetch costs a
-- fixed handful of commands whatever the batch; an empty one returns early.
-- KEYS[1] scheduled zset, KEYS[2] ready list, KEYS[3] leases zset,
-- KEYS[4] jobs hash, KEYS[5] deliveries hash, KEYS[6] token counter,
-- KEYS[7] paused (an operator paused the queue: due jobs are promoted but
-- none is leased until it is resumed; jobs already leased run on)
-- ARGV[1] promote max, ARGV[2] batch, ARGV[3] lease ms
-- Returns {ms until the next scheduled job is due or -1 (only when nothing
-- was leased; 0 when only stale entries were popped), token, id1,
-- payload1, delivery1, id2, ...}.
local now = q_now()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  local ids, els = {}, {}
  for i = 1, #due, 2 do
    ids[#ids + 1] = due[i]
    -- Ready since it fell due: the oldest ready job's age counts from then.
    els[#els + 1] = due[i + 1] .. '|' .. due[i]
  end
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('RPUSH', KEYS[2], unpack(els))
end
-- Paused: due jobs still become ready (so the queue's depth and the age
-- of its oldest ready job show the wait), but none is leased.
if redis.call('EXISTS', KEYS[7]) == 1 then return {-1, 0} end
local out = {-1, 0}
local popped = redis.call('LPOP', KEYS[2], tonumber(ARGV[2]))
if popped then
  local ids = {}
  for i, el in ipairs(popped) do ids[i] = q_ready_id(el) end
  local payloads = redis.call('HMGET', KEYS[4], unpack(ids))
  local failures = redis.call('HMGET', KEYS[5], unpack(ids))
  local token = redis.call('INCR', KEYS[6])
  local until_ms = now + tonumber(ARGV[3])
  local leases = {}
  out[2] = token
  for i, id in ipairs(ids) do
    local payload = payloads[i]
    -- No payload, or the done marker: finished or forgotten meanwhile.
    if payload and payload ~= '' then
      leases[#leases + 1] = until_ms
      leases[#leases + 1] = id .. '|' .. token
      out[#out + 1] = id
      out[#out + 1] = payload
      out[#out + 1] = (tonumber(failures[i]) or 0) + 1
    end
  end
  if #leases > 0 then redis.call('ZADD', KEYS[3], unpack(leases)) end
end
if popped and #out == 2 then
  -- Everything popped was stale: look again at once, the list may hold more.
  out[1] = 0
elseif #out == 2 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then out[1] = math.max(0, tonumber(first[2]) - now) end
end
return out
