//! The Lua scripts that make Redis each room's sequencer (SPEC §5.4): a change, its `seq`,
//! its place in the room's history and its publication happen in one script, atomically.
//! Scripts run by `EVALSHA`; a Redis that lost them (restarted, `SCRIPT FLUSH`) answers
//! `NOSCRIPT` and the caller sends the source with `EVAL` instead.

/// Applies a change and sequences its event.
///
/// KEYS: 1 epoch, 2 seq, 3 history stream, 4 state hash (config, `c:<counter>`), 5 the
/// poll's votes hash (or any room key), 6 the room's set of polls.
/// ARGV: 1 channel, 2 an epoch for a room Redis does not know, 3 history size, 4 body (a
/// poll's: its prefix), 5 op (`event`, `config`, `counter`, `vote`), then per op:
/// config: 6 config; counter: 6 id, 7 expected value, 8 new value; vote: 6 user, 7 answer
/// (`""` retracts), 8 the body's suffix, 9 the poll's member in the set of polls.
///
/// Answers `{"ok", epoch, seq}`, `{"conflict", current}` (a counter moved: add to what is
/// there and try again) or `{"same"}` (a vote that changes nothing: no event).
pub const SEQUENCE: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[1], epoch)
end
local op = ARGV[5]
local body = ARGV[4]
if op == 'config' then
  redis.call('HSET', KEYS[4], 'config', ARGV[6])
elseif op == 'counter' then
  local field = 'c:' .. ARGV[6]
  local current = redis.call('HGET', KEYS[4], field) or '0'
  if current ~= ARGV[7] then
    return {'conflict', current}
  end
  redis.call('HSET', KEYS[4], field, ARGV[8])
elseif op == 'vote' then
  local user, answer = ARGV[6], ARGV[7]
  local old = redis.call('HGET', KEYS[5], user)
  if answer == '' then
    if not old then return {'same'} end
    redis.call('HDEL', KEYS[5], user)
  else
    if old == answer then return {'same'} end
    redis.call('HSET', KEYS[5], user, answer)
  end
  redis.call('SADD', KEYS[6], ARGV[9])
  local counts, any = {}, false
  for _, v in ipairs(redis.call('HVALS', KEYS[5])) do
    counts[v] = (counts[v] or 0) + 1
    any = true
  end
  local stats = '{}'
  if any then stats = cjson.encode(counts) end
  body = body .. stats .. ARGV[8]
elseif op ~= 'event' then
  return redis.error_reply('unknown op ' .. op)
end
local seq = redis.call('INCR', KEYS[2])
local message = epoch .. ' ' .. seq .. ' ' .. body
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'm', message)
redis.call('PUBLISH', ARGV[1], message)
return {'ok', epoch, tostring(seq)}
"#;

/// A room's state, for a node that makes it live (creating its epoch if Redis has none).
///
/// KEYS: 1 epoch, 2 seq, 3 state hash, 4 set of polls. ARGV: 1 an epoch for a new room,
/// 2 the prefix of the room's poll keys.
/// Answers `{epoch, seq, {field, value, …}, {poll member, {user, answer, …}, …}}`.
pub const LOAD: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local seq = redis.call('GET', KEYS[2]) or '0'
local polls = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  table.insert(polls, member)
  table.insert(polls, redis.call('HGETALL', ARGV[2] .. member))
end
return {epoch, seq, redis.call('HGETALL', KEYS[3]), polls}
"#;
