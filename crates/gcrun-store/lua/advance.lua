-- Advances a counter from `expected` to `expected + 1`, with more fields,
-- only if it still holds `expected` and the run is still in the status
-- the step decided on: of duplicate jobs for one step, one goes on, and a
-- step decided on a run that has since ended (the sweeper, an unknown
-- outcome found by another copy) writes nothing into it.
-- KEYS[1] run hash, KEYS[2] (optional) history list: with it, the last
-- ARGV is an attempt (JSON, without its time) appended to the history with
-- Redis's time, so an operator sees every failed attempt, not only the last
-- ARGV[1] counter field, ARGV[2] expected, ARGV[3] status, ARGV[4..]
-- field/value pairs
-- Returns 1 advanced, 0 moved on already, -1 no such run.
-- A fragment: defines `s_advance(KEYS, ARGV)`; the store runs it alone, the
-- worker's step script beside the engine's ack (see ARCHITECTURE.md).
local function s_advance(KEYS, ARGV)
  -- Every record has a status: none means no record.
  local f = redis.call('HMGET', KEYS[1], 'status', ARGV[1])
  if not f[1] then return -1 end
  if (f[2] or '0') ~= ARGV[2] then return 0 end
  if f[1] ~= ARGV[3] then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], tostring(tonumber(ARGV[2]) + 1))
  local last = #ARGV
  if KEYS[2] then
    local entry = cjson.decode(ARGV[last])
    local t = redis.call('TIME')
    entry.atMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('RPUSH', KEYS[2], cjson.encode(entry))
    last = last - 1
  end
  if last > 3 then
    local fields = {}
    for i = 4, last do fields[#fields + 1] = ARGV[i] end
    redis.call('HSET', KEYS[1], unpack(fields))
  end
  return 1
end
