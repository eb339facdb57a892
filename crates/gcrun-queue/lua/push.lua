-- Pushes jobs to one queue, each at most once: a job whose id the queue
-- holds (pending, leased, remembered as done, or dead) is skipped, so a
-- step can always be pushed again and never makes a second copy.
-- KEYS[1] jobs hash, KEYS[2] scheduled zset, KEYS[3] ready list
-- ARGV[1] the queue's wake channel, then (id, payload, delay_ms) triples;
-- the caller sends at most a bounded number of triples per call.
-- Returns the number of jobs added.
local jobs = {}
for i = 2, #ARGV, 3 do jobs[#jobs + 1] = {ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])} end
local now, up = q_clock()
return q_push(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now, up, jobs)
