-- Records one webhook delivery attempt, compare-and-set on the attempt
-- counter: of duplicate jobs for one attempt, one goes on. The attempt
-- counter moves to ARGV[2] + 1; a new status (delivered or dead) is set
-- only from pending, and a dead webhook is indexed for operators.
-- KEYS[1] run hash, KEYS[2] webhook dead-letter zset, KEYS[3]
-- webhooks-owed zset (a settled webhook leaves it)
-- ARGV[1] run id, ARGV[2] expected attempts, ARGV[3] new status
-- ('delivered', 'dead' or '': stays pending), ARGV[4] now_ms,
-- ARGV[5..] field/value pairs written with it
-- Returns 1 applied, 0 stale (another copy went on, not pending, or the
-- run is going again after a requeue), -1 no such run.
-- A fragment: defines `s_webhook_step(KEYS, ARGV)`; the store runs it alone, the
-- worker's step script beside the engine's ack (see ARCHITECTURE.md).
local function s_webhook_step(KEYS, ARGV)
  local f = redis.call('HMGET', KEYS[1], 'status', 'webhook_status', 'webhook_attempts')
  if not f[1] then return -1 end
  -- Every ended status (RunStatus::is_terminal; the store's tests check
  -- that each one's webhook step applies).
  local ended = {completed = true, failed = true, timed_out = true, rejected = true, dead = true, cancelled = true}
  if not ended[f[1]] then return 0 end
  if f[2] ~= 'pending' then return 0 end
  if (f[3] or '0') ~= ARGV[2] then return 0 end
  local fields = {'webhook_attempts', tostring(tonumber(ARGV[2]) + 1)}
  if ARGV[3] ~= '' then
    fields[#fields + 1] = 'webhook_status'
    fields[#fields + 1] = ARGV[3]
  end
  for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  if ARGV[3] == 'dead' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) end
  if ARGV[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[1]) end
  return 1
end
