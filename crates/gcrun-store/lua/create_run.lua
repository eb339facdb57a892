-- Creates a run unless its idempotency key already names one.
-- KEYS[1] run hash, KEYS[2] history list, KEYS[3] audit stream,
-- KEYS[4] counts hash, KEYS[5] idempotency key, KEYS[6] open zset,
-- KEYS[7] runs zset (every run, by acceptance)
-- ARGV[1] run id, ARGV[2] now_ms, ARGV[3] audit cap, ARGV[4] idempotency
-- ttl ms ('0': no key), ARGV[5] transition json, ARGV[6] cause,
-- ARGV[7..] field/value pairs of the new record
-- Returns {1, id} created, {0, existing id} when the key or id was taken.
-- A fragment: defines `s_create_run(KEYS, ARGV)` (see write.rs); the producer
-- runs it with the run's submit push in one script.
local function s_create_run(KEYS, ARGV)
  if ARGV[4] ~= '0' then
    local existing = redis.call('GET', KEYS[5])
    if existing then return {0, existing} end
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[1]} end
  -- The record's fields, and the two this script needs again, read from
  -- the arguments rather than back from Redis.
  local fields, given = {}, {}
  for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
  for i = 7, #ARGV - 1, 2 do given[ARGV[i]] = ARGV[i + 1] end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('RPUSH', KEYS[2], ARGV[5])
  local entry = {'run', ARGV[1], 'from', '', 'to', 'accepted', 'at', ARGV[2], 'cause', ARGV[6]}
  local corr = given['upstream_correlation']
  if corr then entry[#entry + 1] = 'correlation'; entry[#entry + 1] = corr end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(entry))
  redis.call('HINCRBY', KEYS[4], 'accepted', 1)
  redis.call('HINCRBY', KEYS[4], 'total', 1)
  redis.call('ZADD', KEYS[6], given['deadline_ms'] or '0', ARGV[1])
  redis.call('ZADD', KEYS[7], ARGV[2], ARGV[1])
  if ARGV[4] ~= '0' then redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[4]) end
  return {1, ARGV[1]}
end
