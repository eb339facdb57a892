-- Upgrade from the engine's first layout, where an ack deleted the
-- payload and pushes checked the done set: marks a slice of the done ids
-- with the empty marker this layout's pushes check (HSETNX), so a step
-- finished under the older release is still not pushed again.
-- KEYS[1] done zset, KEYS[2] jobs hash
-- ARGV[1] offset, ARGV[2] max
-- Returns how many ids the slice held (fewer than max: the last slice).
local ids = redis.call('ZRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do redis.call('HSETNX', KEYS[2], id, '') end
return #ids
