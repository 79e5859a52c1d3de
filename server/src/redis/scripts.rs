//! The Lua scripts that make Redis each room's sequencer (SPEC §5.4): a change, its `seq`,
//! its place in the room's history and its publication happen in one script, atomically.
//! Scripts run by `EVALSHA`; a Redis that lost them (restarted, `SCRIPT FLUSH`) answers
//! `NOSCRIPT` and the caller sends the source with `EVAL` instead.
//!
//! Redis Cluster: every key a script declares is one room's (`rk:{room}:…`) or the one
//! key of a node-wide script (`rk:nodes`), so a script never spans slots; events go out
//! with `SPUBLISH` on the room's shard channel `rk:{room}`, in the room's slot too (sharded
//! pub/sub, Redis 7; standalone Redis takes it as well).

/// The Lua that every script writing a room's history shares, so that the room's epoch,
/// its message format (`wire`: a header line `<epoch> <first seq>`, then the bodies a line
/// each) and its stream's trimming are written once: `epoch_of` (the room's epoch, made
/// from `fresh` if Redis has none), `append` (events `first..last` as one message: one
/// stream entry, id `last`, trimmed by id to keep `history` events, and one publication)
/// and `run` (a run of `count` plain events at the room's next seqs: `{"ok", epoch, last}`).
/// A macro, so that each script is one literal (`concat!`).
macro_rules! room_history_lua {
    () => {
        r#"
local function epoch_of(key, fresh)
  local epoch = redis.call('GET', key)
  if not epoch then
    epoch = fresh
    redis.call('SET', key, epoch)
  end
  return epoch
end
local function append(stream, channel, history, epoch, first, last, bodies)
  local message = epoch .. ' ' .. first .. '\n' .. bodies
  redis.call('XADD', stream, 'MINID', '~', math.max(0, last - history), last .. '-0', 'm', message)
  redis.call('SPUBLISH', channel, message)
end
local function run(epoch_key, seq_key, stream, channel, fresh, history, count, bodies)
  local epoch = epoch_of(epoch_key, fresh)
  local last = redis.call('INCRBY', seq_key, count)
  append(stream, channel, history, epoch, last - count + 1, last, bodies)
  return {'ok', epoch, tostring(last)}
end
"#
    };
}

/// Applies a change and sequences its event.
///
/// KEYS: 1 epoch, 2 seq, 3 history stream, 4 state hash (config, `c:<counter>`), 5 the
/// poll's votes hash (or any room key), 6 the room's set of polls.
/// ARGV: 1 channel, 2 an epoch for a room Redis does not know, 3 history size, 4 body (a
/// poll's: its prefix), 5 op (`event`, `config`, `counter`, `vote`), then per op:
/// config: 6 config; counter: 6 id, 7 the delta, 8 `""` (add here) or the value expected,
/// 9 the new value when one is expected, 10 the body's suffix (ARGV 4 is its prefix: the
/// value goes between); vote: 6 user, 7 answer (`""` retracts), 8 the body's suffix, 9
/// the poll's member in the set of polls.
///
/// A counter is added to here, exactly, in decimal (`dec_add`: Lua's numbers are doubles),
/// so that increments from any number of connections and nodes never conflict. A sum
/// with more than 28 significant digits or decimals, where `rust_decimal` (what a node
/// alone computes with) would round, is answered `{"conflict", current}`: the node adds
/// with `rust_decimal` and proposes a compare-and-set of the value it expects.
///
/// Op `events` sequences several plain events of the room at once, in order (ARGV 4 is
/// unused; ARGV 6 is how many, ARGV 7 their bodies joined by newlines — a body is compact
/// JSON, which has none): one `INCRBY`, one message (`wire`: a header line and the bodies)
/// appended as one stream entry whose id is the last event's `seq`, and published once.
/// What a node proposes together costs Redis one script run, one string to take in and one
/// `XADD`, and every node one push: per event, Redis does no work of its own (measured with
/// `bench/redis-script.sh`: ~2.5 µs per event at 100 per call, against ~10 µs when each
/// event was an argument, a message and an entry of its own).
///
/// The stream is trimmed by id (`MINID ~ <seq> − history size`), not by length: its
/// entries hold one event or a run, and ids are `seq`s, so the history keeps at least the
/// last `history size` events whatever the runs.
///
/// Answers `{"ok", epoch, seq}` (the last event's), `{"conflict", current}` (for a counter,
/// above) or `{"same"}` (a vote that changes nothing: no event).
pub const SEQUENCE: &str = concat!(
    room_history_lua!(),
    r#"
-- "-12.50" → negative?, integer digits, decimals; nil if it is not a plain decimal.
local function dec_parts(s)
  local neg = false
  if string.sub(s, 1, 1) == '-' then neg = true; s = string.sub(s, 2) end
  local i, f = string.match(s, '^(%d+)%.?(%d*)$')
  if not i then return nil end
  return neg, i, f
end
-- Digit strings of one width: their sum (width + 1 digits) or difference (x >= y).
local function mag_add(x, y)
  local out, carry = {}, 0
  for k = #x, 1, -1 do
    local d = string.byte(x, k) + string.byte(y, k) - 96 + carry
    carry = d >= 10 and 1 or 0
    out[k + 1] = d - 10 * carry
  end
  out[1] = carry
  return table.concat(out)
end
local function mag_sub(x, y)
  local out, borrow = {}, 0
  for k = #x, 1, -1 do
    local d = string.byte(x, k) - string.byte(y, k) - borrow
    borrow = d < 0 and 1 or 0
    out[k] = d + 10 * borrow
  end
  return table.concat(out)
end
-- a + b exactly, written as rust_decimal writes a normalized value; nil beyond 28
-- significant digits or 28 decimals.
local function dec_add(a, b)
  local an, ai, af = dec_parts(a)
  local bn, bi, bf = dec_parts(b)
  if an == nil or bn == nil then return nil end
  local scale = math.max(#af, #bf)
  local x = ai .. af .. string.rep('0', scale - #af)
  local y = bi .. bf .. string.rep('0', scale - #bf)
  local width = math.max(#x, #y)
  x = string.rep('0', width - #x) .. x
  y = string.rep('0', width - #y) .. y
  local neg, r
  if an == bn then
    neg, r = an, mag_add(x, y)
  elseif x >= y then
    neg, r = an, mag_sub(x, y)
  else
    neg, r = bn, mag_sub(y, x)
  end
  if scale > 0 then
    r = string.sub(r, 1, #r - scale) .. '.' .. string.sub(r, #r - scale + 1)
    r = string.gsub(string.gsub(r, '0+$', ''), '%.$', '')
  end
  r = string.gsub(r, '^0+', '')
  if r == '' or string.sub(r, 1, 1) == '.' then r = '0' .. r end
  local decimals = string.match(r, '%.(%d*)$') or ''
  local significant = string.gsub(string.gsub(r, '%.', ''), '^0+', '')
  if #significant > 28 or #decimals > 28 then return nil end
  if r == '0' then neg = false end
  if neg then r = '-' .. r end
  return r
end
local op = ARGV[5]
if op == 'events' then
  return run(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[6]), ARGV[7])
end
local epoch = epoch_of(KEYS[1], ARGV[2])
local body = ARGV[4]
if op == 'config' then
  redis.call('HSET', KEYS[4], 'config', ARGV[6])
elseif op == 'counter' then
  local field = 'c:' .. ARGV[6]
  local current = redis.call('HGET', KEYS[4], field) or '0'
  local value
  if ARGV[8] == '' then
    value = dec_add(current, ARGV[7])
  elseif current == ARGV[8] then
    value = ARGV[9]
  end
  if not value then
    return {'conflict', current}
  end
  redis.call('HSET', KEYS[4], field, value)
  body = body .. value .. ARGV[10]
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
append(KEYS[3], ARGV[1], ARGV[3], epoch, seq, seq, body)
return {'ok', epoch, tostring(seq)}
"#
);

/// Sequences the runs of plain events of several rooms in one script run (standalone
/// Redis only: the keys of many rooms are in many slots, which a Cluster refuses in one
/// script). Each run is what op `events` of [`SEQUENCE`] does with it — one `INCRBY`, one
/// message appended as one stream entry and published once —, in the order given; a room
/// may come more than once (a long run cut in calls), each run after the one before.
///
/// Many small rooms each with an event or two per turn (W3's shape) cost Redis a script
/// run per room otherwise: ~25 µs per call against ~9 µs of commands in it (`INFO
/// commandstats`, bench/RESULTS.md), so one run for many rooms saves most of that.
///
/// KEYS: per room (in threes) 1 epoch, 2 seq, 3 history stream. ARGV: 1 history size, then
/// per room (in fours) 1 channel, 2 an epoch for a room Redis does not know, 3 how many
/// events, 4 their bodies joined by newlines.
///
/// Answers one `{"ok", epoch, seq}` per run (its last event's `seq`), in order; a run that
/// Redis refuses (a room whose keys were damaged — evicted, say — so that its stream
/// already holds a later id) is an error in its place, and the other rooms' runs are
/// sequenced all the same (`pcall`), as they would be in calls of their own.
pub const SEQUENCE_ROOMS: &str = concat!(
    room_history_lua!(),
    r#"
local history = tonumber(ARGV[1])
local function sequence(k, a)
  return run(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[a + 1], ARGV[a + 2], history,
    tonumber(ARGV[a + 3]), ARGV[a + 4])
end
local answers = {}
for i = 0, #KEYS / 3 - 1 do
  local ok, answer = pcall(sequence, 3 * i, 1 + 4 * i)
  if not ok then
    answer = redis.error_reply(type(answer) == 'table' and answer.err or tostring(answer))
  end
  answers[i + 1] = answer
end
return answers
"#
);

/// A room's state, for a node that makes it live (creating its epoch if Redis has none).
///
/// KEYS: 1 epoch, 2 seq, 3 state hash, 4 set of polls, 5 members hash, 6 the room's Pact
/// suffix counter. ARGV: 1 an epoch for a new room, 2 the prefix of the room's poll keys,
/// 3 how many suffixes to reserve for this node (a block: suffixes stay unique in the room
/// whichever node hands them out).
/// Answers `{epoch, seq, {field, value, …}, {poll member, {user, answer, …}, …},
/// {member key, value, …}, the block's last suffix}`.
pub const LOAD: &str = concat!(
    room_history_lua!(),
    r#"
local epoch = epoch_of(KEYS[1], ARGV[1])
local seq = redis.call('GET', KEYS[2]) or '0'
local polls = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  table.insert(polls, member)
  table.insert(polls, redis.call('HGETALL', ARGV[2] .. member))
end
local last = redis.call('INCRBY', KEYS[6], ARGV[3])
return {epoch, seq, redis.call('HGETALL', KEYS[3]), polls, redis.call('HGETALL', KEYS[5]), last}
"#
);

/// A room's shared presence: who is in the room on which node, each user's number of
/// connections, and the diffs every node's presence watchers get (published, not
/// sequenced: presence is state, not stream). When a user's last connection leaves, its
/// ephemeral votes are withdrawn and each poll's new tally is sequenced like any vote.
///
/// KEYS (all the room's): 1 members hash (`<node>:<conn>` → `<len of user>:<user><member
/// JSON>`), 2 users hash (user → connections), 3 set of polls, 4 epoch, 5 seq, 6 history
/// stream. The node's own records — its set of rooms (what a reaper walks when the node
/// goes silent) and its entry in the set of nodes — are in other slots: the caller writes
/// them with [`REGISTER`] just before a join, not here.
/// ARGV: 1 channel, 2 an epoch for a room Redis does not know, 3 history size, 4 now (ms),
/// 5 the prefix of the room's poll keys, 6 op (`join`, `update`, `leave`, `reap`), then:
/// join/update: 7 key, 8 value, 9 user, 10 scope JSON, 11 origin JSON;
/// leave: 7 key, 10 scope JSON, 11 origin JSON; reap: 7 the silent node's key prefix.
/// Answers the room's member count.
pub const PRESENCE: &str = concat!(
    room_history_lua!(),
    r#"
local function parse(value)
  local colon = string.find(value, ':', 1, true)
  local n = tonumber(string.sub(value, 1, colon - 1))
  return string.sub(value, colon + 1, colon + n), string.sub(value, colon + n + 1)
end
local function diff(change, key, member, scope, origin)
  local count = redis.call('HLEN', KEYS[1])
  local body = '{"s":' .. scope .. ',"t":' .. ARGV[4] .. ',"o":' .. origin ..
    ',"k":' .. cjson.encode(key) .. ',"e":{"Presence":{"change":"' .. change ..
    '","member":' .. member .. ',"count":' .. count .. '}}}'
  redis.call('SPUBLISH', ARGV[1], '- 0\n' .. body)
end
local function sequence(body)
  local epoch = epoch_of(KEYS[4], ARGV[2])
  local seq = redis.call('INCR', KEYS[5])
  append(KEYS[6], ARGV[1], ARGV[3], epoch, seq, seq, body)
end
local function withdraw(user)
  for _, poll in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if string.sub(poll, 1, 2) == 'e:' then
      local votes = ARGV[5] .. poll
      if redis.call('HDEL', votes, user) == 1 then
        local counts, any = {}, false
        for _, v in ipairs(redis.call('HVALS', votes)) do
          counts[v] = (counts[v] or 0) + 1
          any = true
        end
        local stats = '{}'
        if any then stats = cjson.encode(counts) end
        local id = cjson.encode(string.sub(poll, 3))
        sequence('{"s":{"Topic":{"kind":"ephemeralPoll","id":' .. id .. '}},"t":' ..
          ARGV[4] .. ',"o":[0,0],"e":{"Poll":{"kind":"Ephemeral","id":' .. id ..
          ',"stats":' .. stats .. '}}}')
      end
    end
  end
end
local function leave(key, scope, origin)
  local value = redis.call('HGET', KEYS[1], key)
  if not value then return end
  redis.call('HDEL', KEYS[1], key)
  local user, member = parse(value)
  diff('Left', key, member, scope, origin)
  if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
    withdraw(user)
  end
end
local op = ARGV[6]
if op == 'join' then
  if redis.call('HSET', KEYS[1], ARGV[7], ARGV[8]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[9], 1)
    local _, member = parse(ARGV[8])
    diff('Joined', ARGV[7], member, ARGV[10], ARGV[11])
  end
elseif op == 'update' then
  if redis.call('HEXISTS', KEYS[1], ARGV[7]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[7], ARGV[8])
    local _, member = parse(ARGV[8])
    diff('Updated', ARGV[7], member, ARGV[10], ARGV[11])
  end
elseif op == 'leave' then
  leave(ARGV[7], ARGV[10], ARGV[11])
elseif op == 'reap' then
  for _, key in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(key, 1, #ARGV[7]) == ARGV[7] then
      leave(key, '{"Presence":{"except":null}}', '[0,0]')
    end
  end
else
  return redis.error_reply('unknown op ' .. op)
end
return redis.call('HLEN', KEYS[1])
"#
);

/// A node makes itself known in the set of nodes, from its first member on (heartbeat or
/// not: a node that dies before its first heartbeat is still reaped), without moving a
/// heartbeat: KEYS 1 the set of nodes; ARGV 1 the node. Sent with `SADD` of the room to the
/// node's set of rooms, queued before the join itself.
pub const REGISTER: &str = r#"
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
return 1
"#;

/// A node's heartbeat, on Redis's clock (nodes' clocks may differ): KEYS 1 the set of
/// nodes; ARGV 1 the node.
pub const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
return 1
"#;

/// Claims the nodes silent for longer than ARGV 1 ms (each is claimed by one caller only):
/// KEYS 1 the set of nodes. Answers the claimed nodes.
pub const CLAIM_SILENT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local silent = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
for _, node in ipairs(silent) do redis.call('ZREM', KEYS[1], node) end
return silent
"#;
