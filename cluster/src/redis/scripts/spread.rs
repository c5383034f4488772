//! Scripts of the spread key layout (`docs/sharded-adapter.md`, section 5): each touches the keys
//! of one hash tag only (one room's, one user's, or one bucket's), all passed in KEYS as Redis
//! Cluster requires, so none builds a key name. What spans tags is done by the callers as
//! ordered steps that are safe to repeat.
//!
//! A room's hash holds, besides `record` and `max`: `created` (Unix µs, its order in listings),
//! `seq` (the counter ordering its members) and, until its first member joins, `deadline` (Unix
//! ms); an unjoined room's hash also expires at that deadline, so a room nobody joins vanishes
//! even if no sweep ever reaches it.

use super::{Lazy, Script};

/// KEYS: room, room history. ARGV: record JSON, capacity, unjoined deadline (Unix ms), created
/// (Unix µs). Returns 1 when created, 0 when the id is taken.
pub(crate) static CREATE_ROOM_SPREAD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'max', ARGV[2], 'deadline', ARGV[3],
  'created', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
"#,
    )
});

/// KEYS: a user's unjoined rooms. ARGV: now (Unix ms), deadline (Unix ms), most unjoined rooms,
/// room id. Takes a place for the room among the user's unjoined rooms: 1 taken, 2 the room
/// holds one already (nothing to give back on failure), -1 the user has as many as allowed.
/// The set expires with its last deadline.
pub(crate) static RESERVE_UNJOINED: Lazy = Lazy::new(|| {
    Script::new(
        r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 2 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"#,
    )
});

/// KEYS: room, members, member records, room history. ARGV: socket id, member JSON, now (Unix
/// ms). Returns {code, count} and, on a room's first join, its creator's user id as a third
/// element: 1 joined, 2 already a member, -1 no such room, -2 full. A room still unjoined past
/// its deadline is deleted here rather than joined.
pub(crate) static JOIN_ROOM_SPREAD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local count = redis.call('ZCARD', KEYS[2])
local deadline = redis.call('HGET', KEYS[1], 'deadline')
if deadline and count == 0 and tonumber(deadline) <= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return {-1, 0}
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {2, count} end
local max = tonumber(redis.call('HGET', KEYS[1], 'max')) or 0
if count >= max then return {-2, count} end
redis.call('ZADD', KEYS[2], redis.call('HINCRBY', KEYS[1], 'seq', 1), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if deadline then
  redis.call('HDEL', KEYS[1], 'deadline')
  redis.call('PERSIST', KEYS[1])
  return {1, count + 1, cjson.decode(redis.call('HGET', KEYS[1], 'record')).createdBy}
end
return {1, count + 1}
"#,
    )
});

/// KEYS: room, members, member records, room history. ARGV: socket id.
/// Returns {code, count, deleted, member JSON}: 1 left, -1 not a member ({-1, 0, 0}). The last
/// member out deletes the room with its history.
pub(crate) static LEAVE_ROOM_SPREAD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local json = redis.call('HGET', KEYS[3], ARGV[1])
if not json then return {-1, 0, 0} end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local count = redis.call('ZCARD', KEYS[2])
if count == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return {1, 0, 1, json}
end
return {1, count, 0, json}
"#,
    )
});

/// KEYS: room, members, member records, room history. ARGV: `1` to delete the room when this
/// empties it (`0` to keep it), then socket ids. Removes those members; returns {remaining
/// count, deleted (0/1), {removed member JSONs}}.
pub(crate) static REMOVE_MEMBERS_SPREAD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local out = {}
for i = 2, #ARGV do
  local json = redis.call('HGET', KEYS[3], ARGV[i])
  if json then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    table.insert(out, json)
  end
end
local count = redis.call('ZCARD', KEYS[2])
local gone = 0
if ARGV[1] == '1' and #out > 0 and count == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  gone = 1
end
return {count, gone, out}
"#,
    )
});

/// KEYS: room, members, member records, room history. Deletes a joined room that has no member
/// left; returns 1 when it did.
pub(crate) static DELETE_IF_EMPTY_SPREAD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('ZCARD', KEYS[2]) == 0
    and redis.call('HEXISTS', KEYS[1], 'deadline') == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1
end
return 0
"#,
    )
});

/// KEYS: room, members, member records. ARGV: record JSON, capacity, socket id, member JSON,
/// created (Unix µs). Registers a membership a node reports holding, recreating the room when
/// Redis lost it; returns 1 when it was recreated.
pub(crate) static RESYNC_MEMBER_SPREAD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local recreated = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'record', ARGV[1], 'max', ARGV[2], 'created', ARGV[5])
  recreated = 1
elseif redis.call('HDEL', KEYS[1], 'deadline') == 1 then
  redis.call('PERSIST', KEYS[1])
end
if not redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  redis.call('ZADD', KEYS[2], redis.call('HINCRBY', KEYS[1], 'seq', 1), ARGV[3])
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return recreated
"#,
    )
});

/// KEYS: room, members, member records, room history. ARGV: now (Unix ms). The sweep's look at
/// one room found due in an unjoined bucket: {0} gone (deleted now, or already), {1} joined,
/// {2, deadline} still unjoined with a later deadline (the bucket's score was stale).
pub(crate) static EXPIRE_IF_UNJOINED_SPREAD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  return {0}
end
local deadline = redis.call('HGET', KEYS[1], 'deadline')
if not deadline then return {1} end
if redis.call('ZCARD', KEYS[2]) == 0 and tonumber(deadline) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return {0}
end
return {2, deadline}
"#,
    )
});

/// KEYS: a hash. ARGV: field, value. Overwrites the field only if it is there (so a late rename
/// cannot bring back a socket that has gone). Returns 1 when written.
pub(crate) static HSET_IF_PRESENT: Lazy = Lazy::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#,
    )
});

/// KEYS: a user's sockets (hash). ARGV: socket id, socket JSON. Returns 1 when it is the user's
/// first socket.
pub(crate) static USER_SOCKET_ADD: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local first = redis.call('HLEN', KEYS[1]) == 0
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if first then return 1 end
return 0
"#,
    )
});

/// KEYS: a user's sockets (hash). ARGV: socket id. Returns {removed (0/1), sockets left}.
pub(crate) static USER_SOCKET_REMOVE: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
return {removed, redis.call('HLEN', KEYS[1])}
"#,
    )
});

/// KEYS: a user's sockets (hash). ARGV: socket id, user id, new username. Returns the updated
/// socket JSON, or nil when the socket is not this user's.
pub(crate) static USER_SOCKET_RENAME: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return false end
local o = cjson.decode(old)
if o.userId ~= ARGV[2] then return false end
o.username = ARGV[3]
local json = cjson.encode(o)
redis.call('HSET', KEYS[1], ARGV[1], json)
return json
"#,
    )
});
