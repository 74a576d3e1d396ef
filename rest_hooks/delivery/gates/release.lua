-- Free an admission's slots and record how its requests went (see gates/memory.py for
-- the same rules).
-- KEYS[1]: the target's state hash, KEYS[2]: its in-flight slots.
-- ARGV: token, lanes, successes, failures, trailing_failures (after the last success),
--       pause seconds (0: none), probe (0/1), failures, failure_ratio, window, min_calls,
--       cooldown, max_cooldown, ttl
-- Returns the breaker's new state, or '' when it did not change.
local state_key, slots_key = KEYS[1], KEYS[2]
local token, lanes = ARGV[1], tonumber(ARGV[2])
local successes, failed, trailing = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local pause, probe = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_failures, ratio = tonumber(ARGV[8]), tonumber(ARGV[9])
local window, min_calls = tonumber(ARGV[10]), tonumber(ARGV[11])
local base_cooldown, max_cooldown, ttl = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

for lane = 0, lanes - 1 do
  redis.call('ZREM', slots_key, token .. ':' .. lane)
end
local s = redis.call('HMGET', state_key, 'state', 'consecutive', 'window_start',
  'window_calls', 'window_failures', 'cooldown', 'pause_until')
local state = s[1] or 'closed'
local consecutive = tonumber(s[2]) or 0
local window_start = tonumber(s[3]) or 0
local calls, failures = tonumber(s[4]) or 0, tonumber(s[5]) or 0
local cooldown = tonumber(s[6]) or 0
local pause_until = tonumber(s[7]) or 0

-- Every way out goes through here: the hash may have been created just now by an HSET
-- (a target without a rate limit has none before its first release), so set its TTL last.
local function finish(value)
  redis.call('EXPIRE', state_key, ttl)
  return value
end

if pause > 0 and now + pause > pause_until then
  redis.call('HSET', state_key, 'pause_until', now + pause)
end

local function open(new_cooldown)
  redis.call('HSET', state_key, 'state', 'open', 'cooldown', new_cooldown,
    'open_until', now + new_cooldown, 'probe_until', 0)
  return finish('open')
end

if state == 'half_open' and probe == 1 then
  if successes > 0 then
    redis.call('HSET', state_key, 'state', 'closed', 'consecutive', 0, 'window_start',
      now, 'window_calls', 0, 'window_failures', 0, 'cooldown', 0, 'probe_until', 0)
    return finish('closed')
  end
  if failed > 0 then
    return open(math.min(math.max(cooldown * 2, base_cooldown), max_cooldown))
  end
  redis.call('HSET', state_key, 'probe_until', 0)
  return finish('')
end
if state ~= 'closed' or successes + failed == 0 then
  return finish('')
end
if now - window_start >= window then
  window_start, calls, failures = now, 0, 0
end
calls = calls + successes + failed
failures = failures + failed
if successes > 0 then
  consecutive = trailing
else
  consecutive = consecutive + failed
end
redis.call('HSET', state_key, 'consecutive', consecutive, 'window_start', window_start,
  'window_calls', calls, 'window_failures', failures)
if failed > 0 and (consecutive >= max_failures
    or (calls >= min_calls and failures / calls >= ratio)) then
  return open(base_cooldown)
end
return finish('')
