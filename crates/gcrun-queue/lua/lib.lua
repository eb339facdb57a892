-- Shared by every engine script (prepended to each; names are prefixed
-- `q_` so the worker's fused step script can hold them beside the store's).
--
-- Times are Redis's own (TIME), never a worker's clock: a lease or a due
-- time means the same to every worker, whatever their clocks or a stalled
-- connection say.
--
-- Layout of queue q (all under the `{gcrun}` hash tag):
--   :jobs        hash  id -> payload; '' once done (the id's marker, kept
--                      for the retention window so a push of it is a no-op)
--   :scheduled   zset  id by due ms
--   :ready       list  'readysince_ms|id', oldest first
--   :leases      zset  'id|token' by lease expiry ms (token: the fetch that
--                      leased it, so a copy whose lease lapsed is told apart)
--   :deliveries  hash  id -> deliveries that ended without an end (failed or
--                      lost); absent for a job that never failed
--   :seq         string the last lease token
--   :done        zset  id by done ms (retention of the markers)
--   :dead        zset  id by death ms; :reasons hash id -> why
--   :wake        pub/sub channel: a job became ready, or an earlier due time
--   :paused      string  set while an operator has paused the queue (who,
--                        why, when, as JSON): fetches lease nothing

local function q_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Now in ms, rounded down and up. A delayed job is due from the rounded-up
-- now: promotion compares with the rounded-down now, so no job is leased
-- even a fraction of a millisecond before its time.
local function q_clock()
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(t[2]) % 1000 > 0 then return ms, ms + 1 end
  return ms, ms
end

-- The id of a ready-list element or a lease member (the part before or
-- after the separator); an element without one is the id itself.
local function q_ready_id(el)
  return string.match(el, '^%d+|(.*)$') or el
end

local function q_lease_id(member)
  return string.match(member, '^(.*)|%d+$') or member
end

-- Schedules (due_ms, id, due_ms, id, ...) and tells whether an idle worker
-- must be woken: the earliest of them is due before whatever it waits for.
local function q_schedule(sched, pairs_, earliest)
  local head = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
  redis.call('ZADD', sched, unpack(pairs_))
  return (not head[2]) or earliest < tonumber(head[2])
end

-- Pushes jobs {id, payload, delay_ms} to one queue, each at most once
-- (HSETNX: an id the queue holds in any state, or remembers as done, is
-- skipped). Ready jobs go to the ready list in one RPUSH; an idle worker is
-- woken only when the list was empty or the schedule's head moved earlier,
-- so a busy queue pays no PUBLISH. The caller bounds #jobs (unpack limit).
-- `now`, `up`: q_clock()'s two values. Returns how many were added.
local function q_push(jobs_key, sched, ready, channel, now, up, jobs)
  local now_ready, later, earliest, added = {}, {}, nil, 0
  for _, j in ipairs(jobs) do
    if redis.call('HSETNX', jobs_key, j[1], j[2]) == 1 then
      added = added + 1
      if j[3] <= 0 then
        now_ready[#now_ready + 1] = now .. '|' .. j[1]
      else
        local due = up + j[3]
        later[#later + 1] = due
        later[#later + 1] = j[1]
        if not earliest or due < earliest then earliest = due end
      end
    end
  end
  local wake = false
  if #now_ready > 0 then
    wake = redis.call('RPUSH', ready, unpack(now_ready)) == #now_ready
  end
  if earliest and q_schedule(sched, later, earliest) then wake = true end
  if wake then redis.call('PUBLISH', channel, 1) end
  return added
end
