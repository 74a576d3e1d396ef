-- Admit one request to a target, or say how long to wait. The rules are those of
-- rest_hooks/delivery/flow.py and gates/memory.py; the clock is the Redis server's.
-- KEYS[1]: the target's state hash, KEYS[2]: its in-flight slots (zset token -> expiry).
-- ARGV: token, rate (0: none), burst, max_in_flight (-1: none), slot_lease, probe_lease, ttl,
--       reservation (0: none), reservation_early
-- Returns {allowed, wait, reason, probe, transition, reservation}.
local state_key, slots_key = KEYS[1], KEYS[2]
local token = ARGV[1]
local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_in_flight = tonumber(ARGV[4])
local slot_lease, probe_lease, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local reservation = tonumber(ARGV[8])
local early = tonumber(ARGV[9])

-- Times are stored as Lua numbers, which Redis writes at full precision; tostring would
-- keep 14 digits only, rounding a Unix time to 0.1 ms: GCRA would drift at high rates.
-- For the same reason times are returned formatted, not with tostring.
local function fmt(seconds)
  return string.format('%.6f', seconds)
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

if reservation > 0 and now < reservation - early then
  return {0, fmt(reservation - now), 'rate_limit', 0, '', fmt(reservation)}
end

local s = redis.call('HMGET', state_key, 'state', 'open_until', 'probe_until', 'pause_until', 'tat',
  'cooldown', 'sent')
local state = s[1] or 'closed'
local open_until = tonumber(s[2]) or 0
local probe_until = tonumber(s[3]) or 0
local pause_until = tonumber(s[4]) or 0
local tat = tonumber(s[5]) or 0
local cooldown = tonumber(s[6]) or 0
local sent = tonumber(s[7]) or 0

local transition = ''
local probe = 0
if state == 'open' then
  if now < open_until then
    return {0, fmt(open_until - now), 'circuit_open', 0, '', ''}
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
    return {0, fmt(wait), 'circuit_open', 0, transition, ''}
  end
  probe = 1
end
if pause_until > now then
  return {0, fmt(pause_until - now), 'rate_limit', 0, transition, ''}
end
local kept = ''
if reservation > 0 then
  kept = fmt(reservation)
end
if max_in_flight >= 0 then
  redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', now)
  if redis.call('ZCARD', slots_key) >= max_in_flight then
    return {0, '0.25', 'in_flight', 0, transition, kept}
  end
end
if rate > 0 then
  local interval = 1 / rate
  local tolerance = (burst - 1) * interval
  if reservation == 0 then
    -- GCRA, in the form that stays exact: how far the theoretical arrival time is ahead
    -- of now, against the burst's tolerance. The slot is booked whether or not it is now.
    local ahead = math.max(tat - now, 0)
    redis.call('HSET', state_key, 'tat', now + ahead + interval)
    reservation = now + math.max(ahead - tolerance, 0)
    kept = fmt(reservation)
    if reservation > now then
      redis.call('EXPIRE', state_key, ttl)
      return {0, fmt(reservation - now), 'rate_limit', 0, transition, kept}
    end
  end
  -- The same GCRA over the times requests really go: one that comes back late to its
  -- slot does not go out together with the next ones.
  local ahead = math.max(sent - now, 0)
  if ahead > tolerance then
    redis.call('EXPIRE', state_key, ttl)
    return {0, fmt(ahead - tolerance), 'rate_limit', 0, transition, kept}
  end
  redis.call('HSET', state_key, 'sent', now + ahead + interval)
end
if max_in_flight >= 0 then
  redis.call('ZADD', slots_key, now + slot_lease, token)
  redis.call('EXPIRE', slots_key, ttl)
end
if probe == 1 then
  redis.call('HSET', state_key, 'probe_until', now + probe_lease)
end
redis.call('EXPIRE', state_key, ttl)
return {1, '0', '', probe, transition, ''}
