-- Free a request's slot and record its result (see gates/memory.py for the same rules).
-- KEYS[1]: the target's state hash, KEYS[2]: its in-flight slots.
-- ARGV: token, result (success/failure/neutral), pause seconds (0: none), probe (0/1),
--       failures, failure_ratio, window, min_calls, cooldown, max_cooldown, ttl,
--       successes (requests of the same batch before this one that succeeded)
-- Returns the breaker's new state, or '' when it did not change.
local state_key, slots_key = KEYS[1], KEYS[2]
local token, result = ARGV[1], ARGV[2]
local pause, probe = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_failures, ratio = tonumber(ARGV[5]), tonumber(ARGV[6])
local window, min_calls = tonumber(ARGV[7]), tonumber(ARGV[8])
local base_cooldown, max_cooldown, ttl = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local successes = tonumber(ARGV[12])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

redis.call('ZREM', slots_key, token)
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
  if result == 'success' then
    redis.call('HSET', state_key, 'state', 'closed', 'consecutive', 0, 'window_start',
      now, 'window_calls', 0, 'window_failures', 0, 'cooldown', 0, 'probe_until', 0)
    return finish('closed')
  end
  if result == 'failure' then
    return open(math.min(math.max(cooldown * 2, base_cooldown), max_cooldown))
  end
  redis.call('HSET', state_key, 'probe_until', 0)
  return finish('')
end
if state ~= 'closed' then
  return finish('')
end
local failed = 0
if result == 'success' then
  successes = successes + 1
elseif result == 'failure' then
  failed = 1
end
if successes == 0 and failed == 0 then
  return finish('')
end
if now - window_start >= window then
  window_start, calls, failures = now, 0, 0
end
calls = calls + successes + failed
if successes > 0 then
  consecutive = 0
end
consecutive = consecutive + failed
failures = failures + failed
redis.call('HSET', state_key, 'consecutive', consecutive, 'window_start', window_start,
  'window_calls', calls, 'window_failures', failures)
if failed == 1 and (consecutive >= max_failures
    or (calls >= min_calls and failures / calls >= ratio)) then
  return open(base_cooldown)
end
return finish('')
