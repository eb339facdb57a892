-- Finishes a leased job and pushes the jobs that follow it, in one script:
-- there is no moment where a step is done and its successor missing. The
-- successors are pushed whoever holds the lease (they follow from the
-- step's own write, and their ids dedupe); only the copy holding the
-- current lease finishes the job, a copy whose lease lapsed changes
-- nothing else. The finished job's payload is dropped at once; its id stays
-- as a marker (and in the done set) until retention forgets it.
-- Also a fragment of the worker's fused step script (`q_ack(KEYS, ARGV)`).
-- KEYS[1] leases zset, KEYS[2] jobs hash, KEYS[3] done zset of this queue;
-- then, for each of the three queues (submit, poll, webhook) in that
-- order, its jobs hash, scheduled zset and ready list: KEYS[4..12]
-- ARGV[1] id, ARGV[2] lease token, ARGV[3..5] the three queues' wake
-- channels, then successors as (queue index 0..2, id, payload, delay_ms)
-- quadruples (bounded by the caller)
-- Returns 1 finished, 0 the lease is not this copy's.
local function q_ack(K, A)
  local now, up = q_clock()
  local by = {{}, {}, {}}
  for i = 6, #A, 4 do
    local q = tonumber(A[i]) + 1
    by[q][#by[q] + 1] = {A[i + 1], A[i + 2], tonumber(A[i + 3])}
  end
  for q = 1, 3 do
    if #by[q] > 0 then
      local b = 4 + (q - 1) * 3
      q_push(K[b], K[b + 1], K[b + 2], A[2 + q], now, up, by[q])
    end
  end
  if redis.call('ZREM', K[1], A[1] .. '|' .. A[2]) == 0 then return 0 end
  redis.call('HSET', K[2], A[1], '')
  redis.call('ZADD', K[3], now, A[1])
  return 1
end
