-- Forget a stored response for every instance (docs/config.md "Several
-- instances"): its record becomes a tombstone that lives as long as the
-- response would have, so that an instance holding a copy in memory learns
-- that it was deleted.
--
-- KEYS[1]: the response's record (hash: response, input | deleted)
-- ARGV:    the tombstone's lifetime (ms)
-- Returns: 1 if a response was stored there, else 0.
local had = redis.call('HEXISTS', KEYS[1], 'response')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'deleted', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return had
