-- A rest learnt from an upstream's Retry-After, for every instance: the
-- longest deadline wins (docs/config.md "Several instances").
--
-- KEYS[1]: the rests (hash: scope name -> deadline, Unix ms)
-- ARGV:    scope name, deadline (Unix ms)
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
