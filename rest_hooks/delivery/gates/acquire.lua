-- Admit one request to a target, or say how long to wait. The rules are those of
-- rest_hooks/delivery/flow.py and gates/memory.py; the clock is the Redis server's.
-- KEYS[1]: the target's state hash, KEYS[2]: its in-flight slots (zset token -> expiry).
-- ARGV: token, rate (0: none), burst, max_in_flight (-1: none), slot_lease, probe_lease, ttl
-- Returns {allowed, wait, reason, probe, transition}.
local state_key, slots_key = KEYS[1], KEYS[2]
local token = ARGV[1]
local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_in_flight = tonumber(ARGV[4])
local slot_lease, probe_lease, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

-- Times are stored as Lua numbers, which Redis writes at full precision; tostring would
-- keep 14 digits only, rounding a Unix time to 0.1 ms: GCRA would drift at high rates.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local s = redis.call('HMGET', state_key, 'state', 'open_until', 'probe_until', 'pause_until', 'tat',
  'cooldown')
local state = s[1] or 'closed'
local open_until = tonumber(s[2]) or 0
local probe_until = tonumber(s[3]) or 0
local pause_until = tonumber(s[4]) or 0
local tat = tonumber(s[5]) or 0
local cooldown = tonumber(s[6]) or 0

local transition = ''
local probe = 0
if state == 'open' then
  if now < open_until then
    return {0, tostring(open_until - now), 'circuit_open', 0, ''}
  end
  state, transition, probe_until = 'half_open', 'half_open', 0
  redis.call('HSET', state_key, 'state', state, 'probe_until', 0)
end
if state == 'half_open' then
  if probe_until > now then
    -- The probe usually answers long before its lease runs out: look again after a
    -- cool-down rather than hold everyone back for the whole lease.
    local wait = probe_until - now
    if cooldown > 0 and cooldown < wait then
      wait = cooldown
    end
    return {0, tostring(wait), 'circuit_open', 0, transition}
  end
  probe = 1
end
if pause_until > now then
  return {0, tostring(pause_until - now), 'rate_limit', 0, transition}
end
if max_in_flight >= 0 then
  redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', now)
  if redis.call('ZCARD', slots_key) >= max_in_flight then
    return {0, '0.25', 'in_flight', 0, transition}
  end
end
if rate > 0 then
  local interval = 1 / rate
  local new_tat = math.max(tat, now) + interval
  local allow_at = new_tat - burst * interval
  if now < allow_at then
    return {0, tostring(allow_at - now), 'rate_limit', 0, transition}
  end
  redis.call('HSET', state_key, 'tat', new_tat)
end
if max_in_flight >= 0 then
  redis.call('ZADD', slots_key, now + slot_lease, token)
  redis.call('EXPIRE', slots_key, ttl)
end
if probe == 1 then
  redis.call('HSET', state_key, 'probe_until', now + probe_lease)
end
redis.call('EXPIRE', state_key, ttl)
return {1, '0', '', probe, transition}
