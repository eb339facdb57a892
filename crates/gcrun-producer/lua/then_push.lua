-- A record write and the job it calls for, in one script: the run is
-- created (or requeued) and its submit job pushed together, so no moment
-- exists where an accepted run has no job (a Redis error mid-batch used to
-- leave such runs for the sweeper to find an hour later), or where a
-- requeued run has left the dead-letter set without its job. Composed after
-- the store's write fragments and the engine's lib (see `atomic.rs`). An
-- operator's cancel request (an update guarded by the run's status) pushes
-- the submit job whose step ends the run.
-- KEYS: the write's keys (ARGV[2] of them), then the job queue's jobs
-- hash, scheduled zset and ready list
-- ARGV[1] the write's function, ARGV[2] its key count, ARGV[3] its
-- argument count, then the write's arguments, then the wake channel, the
-- job's id, payload and delay in ms
-- Returns the write's reply; the job is pushed only if the write applied.
local writes = {s_create_run = s_create_run, s_transition = s_transition, s_update = s_update}
local nk, na = tonumber(ARGV[2]), tonumber(ARGV[3])
local wk, wa = {}, {}
for i = 1, nk do wk[i] = KEYS[i] end
for i = 1, na do wa[i] = ARGV[3 + i] end
local written = writes[ARGV[1]](wk, wa)
-- s_update answers a number, the others a table whose first is the code.
if written == 1 or (type(written) == 'table' and written[1] == 1) then
  local p = 3 + na
  local now, up = q_clock()
  q_push(KEYS[nk + 1], KEYS[nk + 2], KEYS[nk + 3], ARGV[p + 1], now, up, {{ARGV[p + 2], ARGV[p + 3], tonumber(ARGV[p + 4])}})
end
return written
