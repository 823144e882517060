-- The end of a request admitted by admit.lua: the tokens it used beyond
-- (or short of) what it was charged, and its concurrency slot back.
--
-- KEYS[1], KEYS[2]: as in admit.lua
-- ARGV: tpm (0 = no rule), tokens over the tpm charge (may be negative),
--       tokens over the day's charge, the UTC day it was admitted on,
--       lease id
local tpm = tonumber(ARGV[1])
if tpm > 0 then
  local tt = tonumber(redis.call('HGET', KEYS[1], 'tt'))
  if tt then
    local span = math.floor(tonumber(ARGV[2]) * 60000000 / tpm)
    redis.call('HSET', KEYS[1], 'tt', math.max(tt + span, 0))
  end
end
if tonumber(redis.call('HGET', KEYS[1], 'day')) == tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[1], 'dt', ARGV[3])
end
redis.call('ZREM', KEYS[2], ARGV[5])
return 1
