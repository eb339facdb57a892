-- Parks a run an operator's hold applies to, only if one of its holds
-- still stands: a run decided on just before a resume goes on instead of
-- waiting for a resume that already happened.
-- KEYS[1] holds hash (scope -> note), KEYS[2] parked zset (run by when)
-- ARGV[1] run id, ARGV[2] now ms, ARGV[3..] the run's scopes
-- Returns 1 parked, 0 no hold stands (the caller pushes its job again).
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
    return 1
  end
end
return 0
