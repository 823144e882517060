-- One request's admission against its client key's rules, for every
-- instance that shares this Redis (docs/config.md "Several instances").
-- The same arithmetic as src/limits (GCRA over microseconds, UTC days),
-- on Redis's clock, so that the instances' clocks need not agree.
--
-- KEYS[1]: the key's state (hash: rt, tt = GCRA times in µs for rpm and
--          tpm; day, dr, dt = the UTC day and its requests and tokens)
-- KEYS[2]: the key's open requests (sorted set: lease id -> expiry in µs)
-- ARGV:    rpm, tpm, maxConcurrent, dailyRequests, dailyTokens (0 = no
--          rule), tokens reserved, lease id, lease lifetime (µs)
-- Returns  {1, limit, remaining, reset ms (requests), limit, remaining,
--          reset ms (tokens), UTC day} when admitted (0s where no rule),
--          {0, rule (1 rpm, 2 tpm, 3 maxConcurrent, 4 dailyRequests,
--          5 dailyTokens), retry after ms} when refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local day = math.floor(tonumber(t[1]) / 86400)
local rpm, tpm, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local dreq, dtok, ask = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local W = 60000000
local s = redis.call('HMGET', KEYS[1], 'rt', 'tt', 'day', 'dr', 'dt')
local rt, tt = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local dr, dt = 0, 0
if tonumber(s[3]) == day then
  dr, dt = tonumber(s[4]) or 0, tonumber(s[5]) or 0
end
local midnight = math.ceil(((day + 1) * 86400000000 - now) / 1000)
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= maxc then
    return {0, 3, 1000}
  end
end
if dreq > 0 and dr >= dreq then
  return {0, 4, midnight}
end
local dcost = ask
if dtok > 0 then
  dcost = math.min(ask, dtok)
  if dt + dcost > dtok then
    return {0, 5, midnight}
  end
end
local out = {1, 0, 0, 0, 0, 0, 0, day}
-- The time units take to come back, and the units free, as src/limits/gcra.rs
-- computes them (exact spans, not whole-µs intervals per unit).
local function span(rate, units) return math.floor(units * W / rate) end
local function free(rate, tat) return math.min(math.floor((now + W - tat) * rate / W), rate) end
if rpm > 0 then
  local new = math.max(rt, now) + span(rpm, 1)
  if new - W > now then
    return {0, 1, math.max(math.ceil((new - W - now) / 1000), 1)}
  end
  rt = new
  out[2], out[3], out[4] = rpm, free(rpm, new), math.ceil((new - now) / 1000)
elseif dreq > 0 then
  out[2], out[3], out[4] = dreq, dreq - dr - 1, midnight
end
if tpm > 0 then
  local cost = math.max(math.min(ask, tpm), 1)
  local new = math.max(tt, now) + span(tpm, cost)
  if new - W > now then
    return {0, 2, math.max(math.ceil((new - W - now) / 1000), 1)}
  end
  tt = new
  out[5], out[6], out[7] = tpm, free(tpm, new), math.ceil((new - now) / 1000)
elseif dtok > 0 then
  out[5], out[6], out[7] = dtok, dtok - dt - dcost, midnight
end
redis.call('HSET', KEYS[1], 'rt', rt, 'tt', tt, 'day', day, 'dr', dr + 1, 'dt', dt + dcost)
redis.call('PEXPIRE', KEYS[1], 172800000)
if maxc > 0 then
  local life = tonumber(ARGV[8])
  redis.call('ZADD', KEYS[2], now + life, ARGV[7])
  redis.call('PEXPIRE', KEYS[2], math.ceil(life / 1000) + 60000)
end
return out
