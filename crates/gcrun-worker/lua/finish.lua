-- A step's end in one script: the run record's compare-and-set write (one
-- of the store's fragments), then, only if it applied, the step's
-- successors, and the job's acknowledgement (the engine's `q_ack`) either
-- way. There is no moment where the record has moved on and the job that
-- follows is missing, nor one where the step is acknowledged and its write
-- not made. Composed after the store's and the engine's fragments (see
-- `finish.rs`); every key comes from them.
-- KEYS: the write's keys (ARGV[2] of them), then q_ack's keys
-- ARGV[1] the write's function, ARGV[2] its key count, ARGV[3] its
-- argument count, ARGV[4] q_ack's fixed argument count (those before the
-- successors), then the write's arguments, then q_ack's
-- Returns {the write's reply, q_ack's reply}.
local writes = {
  s_transition = s_transition, s_advance = s_advance, s_update = s_update,
  s_webhook_step = s_webhook_step, none = function() return 1 end,
}
local nk, na, fixed = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local wk, wa, ak, aa = {}, {}, {}, {}
for i = 1, nk do wk[i] = KEYS[i] end
for i = nk + 1, #KEYS do ak[#ak + 1] = KEYS[i] end
for i = 1, na do wa[i] = ARGV[4 + i] end
for i = 5 + na, #ARGV do aa[#aa + 1] = ARGV[i] end
local written = writes[ARGV[1]](wk, wa)
local applied = written == 1 or (type(written) == 'table' and written[1] == 1)
-- A stale write calls for nothing: its successors are not pushed.
if not applied then
  for i = #aa, fixed + 1, -1 do aa[i] = nil end
end
return {written, q_ack(ak, aa)}
