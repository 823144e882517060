-- Every rest still running, with Redis's clock to read them by; rests
-- that are over are removed.
--
-- KEYS[1]: the rests (hash: scope name -> deadline, Unix ms)
-- Returns  {now (Unix ms), name, deadline, name, deadline, ...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {now}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) > now then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
