-- Admit up to `count` requests to a target, or say how long to wait. The rules are those
-- of rest_hooks/delivery/flow.py and gates/memory.py; the clock is the Redis server's.
-- KEYS[1]: the target's state hash, KEYS[2]: its in-flight slots (zset token:lane -> expiry).
-- ARGV: token, rate (0: none), burst, max_in_flight (-1: none), slot_lease, probe_lease, ttl,
--       reservation (0: none), reservation_early, count, horizon, most lanes to take
-- Returns {allowed, wait, reason, probe, transition, reservation, {send_at...}, lanes}: the
-- wait, reason and reservation of those not admitted, the send times of those admitted.
local state_key, slots_key = KEYS[1], KEYS[2]
local token = ARGV[1]
local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_in_flight = tonumber(ARGV[4])
local slot_lease, probe_lease, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local reservation = tonumber(ARGV[8])
local early = tonumber(ARGV[9])
local count, horizon = tonumber(ARGV[10]), tonumber(ARGV[11])
local most_lanes = tonumber(ARGV[12])

-- Times are stored as Lua numbers, which Redis writes at full precision; tostring would
-- keep 14 digits only, rounding a Unix time to 0.1 ms: GCRA would drift at high rates.
-- For the same reason times are returned formatted, not with tostring.
local function fmt(seconds)
  return string.format('%.6f', seconds)
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local function refuse(wait, reason, transition, reserved)
  return {0, fmt(wait), reason, 0, transition, reserved, {}, 0}
end

if reservation > 0 and now < reservation - early then
  return refuse(reservation - now, 'rate_limit', '', fmt(reservation))
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

-- While a probe is out: it usually answers long before its lease runs out, so the others
-- look again after a cool-down if sooner.
local function look_again()
  local wait = probe_until - now
  if cooldown > 0 and cooldown < wait then
    wait = cooldown
  end
  return wait
end

local transition = ''
local probe = 0
if state == 'open' then
  if now < open_until then
    return refuse(open_until - now, 'circuit_open', '', '')
  end
  state, transition, probe_until = 'half_open', 'half_open', 0
  redis.call('HSET', state_key, 'state', state, 'probe_until', 0)
end
local wanted = count
if state == 'half_open' then
  if probe_until > now then
    return refuse(look_again(), 'circuit_open', transition, '')
  end
  probe, wanted = 1, 1  -- a probe goes alone
end
if pause_until > now then
  return refuse(pause_until - now, 'rate_limit', transition, '')
end
local kept = ''
if reservation > 0 then
  kept = fmt(reservation)
end
local lanes = math.min(wanted, most_lanes)
if max_in_flight >= 0 then
  redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', now)
  lanes = math.min(lanes, max_in_flight - redis.call('ZCARD', slots_key))
  if lanes <= 0 then
    return refuse(0.25, 'in_flight', transition, kept)
  end
end
local send_at = {}
local rest_wait, rest_reason, rest_reserved = 0, '', ''
if rate > 0 then
  local interval = 1 / rate
  local tolerance = (burst - 1) * interval
  local booked  -- the slot booked for the j-th request (from 0)
  if reservation == 0 then
    -- GCRA, in the form that stays exact: how far the theoretical arrival time is ahead
    -- of now, against the burst's tolerance. Every slot is booked, whether or not it
    -- comes within the horizon.
    local ahead = math.max(tat - now, 0)
    redis.call('HSET', state_key, 'tat', now + ahead + wanted * interval)
    booked = function(j) return now + math.max(ahead + j * interval - tolerance, 0) end
  else
    -- Booked when these requests were refused (a hair early counts as on time).
    local start = math.min(reservation, now)
    booked = function(j) return start + j * interval end
  end
  for j = 0, wanted - 1 do
    local slot = booked(j)
    -- The same GCRA over the times requests really go: one that comes back late to its
    -- slot does not go out together with the next ones.
    local go = math.max(now, slot, sent - tolerance)
    if go > now + horizon then
      rest_wait, rest_reason, rest_reserved = go - now, 'rate_limit', fmt(slot)
      break
    end
    sent = math.max(sent, go) + interval
    send_at[#send_at + 1] = fmt(go - now)
  end
  redis.call('HSET', state_key, 'sent', sent)
  if #send_at == 0 then
    redis.call('EXPIRE', state_key, ttl)
    return refuse(rest_wait, rest_reason, transition, rest_reserved)
  end
else
  for j = 1, wanted do
    send_at[j] = '0'
  end
end
lanes = math.min(lanes, #send_at)
if max_in_flight >= 0 then
  for lane = 0, lanes - 1 do
    redis.call('ZADD', slots_key, now + slot_lease, token .. ':' .. lane)
  end
  redis.call('EXPIRE', slots_key, ttl)
end
if probe == 1 then
  probe_until = now + probe_lease
  redis.call('HSET', state_key, 'probe_until', probe_until)
  if count > 1 then
    rest_wait, rest_reason, rest_reserved = look_again(), 'circuit_open', ''
  end
end
redis.call('EXPIRE', state_key, ttl)
return {1, fmt(rest_wait), rest_reason, probe, transition, rest_reserved, send_at, lanes}
