-- Moves a run from ARGV[2] to ARGV[3] if it is still in ARGV[2], with its
-- history, audit entry, counts, dead-letter and open indexes and retention.
-- KEYS[1] run hash, KEYS[2] history list, KEYS[3] audit stream,
-- KEYS[4] counts hash, KEYS[5] dlq zset, KEYS[6] open zset (by deadline),
-- KEYS[7] expiring zset (ended runs by record expiry, '<status>|<id>'),
-- KEYS[8] webhooks-owed zset (ended runs whose webhook is pending)
-- ARGV[1] run id, ARGV[2] from, ARGV[3] to, ARGV[4] now_ms,
-- ARGV[5] transition json, ARGV[6] cause, ARGV[7] audit cap,
-- ARGV[8] the record's fate: expire ms (the run ended), '0' (it goes on:
-- it is in the open set since its creation, nothing to index) or 'reopen'
-- (an ended run taken back, a requeue: keep it and undo its end's expiry
-- and indexes), ARGV[9] dlq 'add' | 'remove' | '',
-- ARGV[10] guard counter field ('' for none), ARGV[11] its expected value:
-- with a guard, the move also requires the counter to hold that value (a
-- poll that sees a new remote state is one step of the poll chain, so a
-- stale copy of it must not apply), ARGV[12..] field/value pairs
-- Returns {1, from} applied, {0, current} stale, {-1, ''} no such run.
-- A fragment: defines `s_transition(KEYS, ARGV)`; the store runs it alone, the
-- worker's step script beside the engine's ack (see ARCHITECTURE.md).
local function s_transition(KEYS, ARGV)
  -- One read: the status, the guard counter and the webhook's state (for
  -- an ending).
  local f = redis.call('HMGET', KEYS[1], 'status', ARGV[10] ~= '' and ARGV[10] or 'status', 'webhook_status')
  local cur = f[1]
  if not cur then return {-1, ''} end
  if cur ~= ARGV[2] then return {0, cur} end
  if ARGV[10] ~= '' and (f[2] or '0') ~= ARGV[11] then return {0, cur} end
  local fields = {'status', ARGV[3], 'updated_ms', ARGV[4]}
  for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('RPUSH', KEYS[2], ARGV[5])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'run', ARGV[1], 'from', ARGV[2], 'to', ARGV[3], 'at', ARGV[4], 'cause', ARGV[6])
  redis.call('HINCRBY', KEYS[4], ARGV[2], -1)
  redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
  if ARGV[9] == 'add' then redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1]) end
  if ARGV[9] == 'remove' then redis.call('ZREM', KEYS[5], ARGV[1]) end
  if ARGV[8] == 'reopen' then
    redis.call('ZADD', KEYS[6], redis.call('HGET', KEYS[1], 'deadline_ms') or '0', ARGV[1])
    redis.call('PERSIST', KEYS[1])
    redis.call('PERSIST', KEYS[2])
    redis.call('ZREM', KEYS[7], ARGV[2] .. '|' .. ARGV[1])
    redis.call('ZREM', KEYS[8], ARGV[1])
  elseif ARGV[8] ~= '0' then
    redis.call('ZREM', KEYS[6], ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
    redis.call('PEXPIRE', KEYS[2], ARGV[8])
    redis.call('ZADD', KEYS[7], tonumber(ARGV[4]) + tonumber(ARGV[8]), ARGV[3] .. '|' .. ARGV[1])
    -- The webhook's state as this write leaves it (an ending owes it).
    local hook = f[3]
    for i = 12, #ARGV - 1, 2 do
      if ARGV[i] == 'webhook_status' then hook = ARGV[i + 1] end
    end
    if hook == 'pending' then
      redis.call('ZADD', KEYS[8], ARGV[4], ARGV[1])
    end
  end
  return {1, cur}
end
