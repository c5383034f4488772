//! Lua scripts for every multi-step change that must be atomic cluster-wide.
//!
//! Redis runs a script without interleaving any other command, so a capacity check and the insert,
//! a removal and the "was that the last one?" check, or a whole purge, are each one step.
//! Keys that depend on stored data (a member's node, a socket's user) are built inside the script
//! from the prefix passed as an argument, by Lua functions that [`crate::keys`] generates from the
//! same parts as [`crate::keys::Keys`] (`room_key(p, id)`, `presence_user_key(p, id)`, ...);
//! no script spells a key name itself, which a test checks.
//!
//! A membership token is `<byte length of roomId>:<roomId><socketId>`, unambiguous whatever
//! characters the ids contain, and built identically here and in Rust ([`membership_token`]).
//!
//! Ids taken from stored data go through Lua `esc` before they become part of a key name, the
//! same escaping as [`crate::keys::key_part`] (checked against a real Redis by the tests).

use std::sync::{LazyLock, OnceLock};

use crate::keys::lua_key_functions;

// Lua shared by several scripts, spliced in with `concat!`. Macros, not consts: `concat!` takes
// only literals. `esc` and the key-name functions go in front of every script (`Script::new`).

/// Lua `esc(s)`: `s` as it appears inside a key name (see [`crate::keys::key_part`]).
macro_rules! esc_fn {
    () => {
        r#"
local function esc(s)
  return (string.gsub(s, '[%%:{}%*%?%[%]\\]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end
"#
    };
}

/// A Lua script, run with `EVALSHA` once its digest is known (so the body crosses the network
/// only when Redis does not have it cached, e.g. after a restart).
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) source: String,
    pub(crate) sha: OnceLock<String>,
}

impl Script {
    /// `esc`, the key-name functions, then `body`.
    fn new(body: &str) -> Self {
        Self {
            source: [esc_fn!(), &lua_key_functions(), body].concat(),
            sha: OnceLock::new(),
        }
    }
}

/// A script built (once, on first use) from [`Script::new`].
type Lazy = LazyLock<Script>;

/// Builds the token stored in a node's membership set.
pub(crate) fn membership_token(room_id: &str, socket_id: &str) -> String {
    format!("{}:{room_id}{socket_id}", room_id.len())
}

/// A whole script: for each id of the Lua list `$ids`, `HGET $args` (which may use `id`);
/// returns the values found, in the list's order.
macro_rules! hget_each {
    ($ids:literal, $args:literal) => {
        concat!(
            "
local out = {}
for _, id in ipairs(",
            $ids,
            ") do
  local value = redis.call('HGET', ",
            $args,
            ")
  if value then table.insert(out, value) end
end
return out
"
        )
    };
}

/// Lua `token(room, sid)` and `split_token(t)`: the membership token as [`membership_token`]
/// builds it, and back to room id and socket id (nil when `t` is not a token).
macro_rules! token_fns {
    () => {
        "
local function token(room, sid)
  return string.len(room) .. ':' .. room .. sid
end
local function split_token(t)
  local c = string.find(t, ':', 1, true)
  if not c then return nil end
  local n = tonumber(string.sub(t, 1, c - 1))
  return string.sub(t, c + 1, c + n), string.sub(t, c + n + 1)
end
"
    };
}

/// Lua `unindex_socket(p, sid, o)`: removes socket `sid`, whose decoded record is `o`, from
/// its user's and its node's socket sets.
macro_rules! unindex_socket_fn {
    () => {
        "
local function unindex_socket(p, sid, o)
  redis.call('SREM', presence_user_key(p, o.userId), sid)
  redis.call('SREM', node_sockets_key(p, o.nodeId), sid)
end
"
    };
}

/// Lua `delete_room(p, index, room)`: deletes room `room` whole (record, members, history),
/// its entry in the rooms index `index` and in the unjoined-rooms set. Needs `esc`.
macro_rules! delete_room_fn {
    () => {
        "
local function delete_room(p, index, room)
  redis.call('DEL', room_key(p, room), room_members_key(p, room),
    room_member_records_key(p, room), room_history_key(p, room))
  redis.call('ZREM', index, room)
  redis.call('ZREM', unjoined_rooms_key(p), room)
end
"
    };
}

/// Lua `sweep_unjoined(p, index, now)`: deletes up to 100 rooms whose unjoined deadline (Unix ms)
/// is at or before `now` and that still have no member. Needs `esc` and `delete_room`.
macro_rules! sweep_unjoined_fn {
    () => {
        "
local function sweep_unjoined(p, index, now)
  local due = redis.call('ZRANGEBYSCORE', unjoined_rooms_key(p), '-inf', now, 'LIMIT', 0, 100)
  for _, room in ipairs(due) do
    if redis.call('ZCARD', room_members_key(p, room)) == 0 then
      delete_room(p, index, room)
    else
      redis.call('ZREM', unjoined_rooms_key(p), room)
    end
  end
end
"
    };
}

/// KEYS: room, rooms index, order counter, room history, unjoined rooms, the creator's unjoined
/// rooms. ARGV: record JSON, capacity, room id, prefix, now (Unix ms), unjoined deadline (Unix
/// ms), most unjoined rooms per creator.
/// Returns 1 when created, 0 when the id is taken, -1 when the creator has as many unjoined rooms
/// as allowed. Rooms past their unjoined deadline are swept first, so a room nobody joins is gone
/// by its deadline or at the next creation after it. The creator's set expires with its last
/// deadline, and a join takes the room out of it.
pub(crate) static CREATE_ROOM: Lazy = Lazy::new(|| {
    Script::new(concat!(
        delete_room_fn!(),
        sweep_unjoined_fn!(),
        r#"
sweep_unjoined(ARGV[4], KEYS[2], ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[5])
if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[7]) then return -1 end
local order = redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'max', ARGV[2])
redis.call('ZADD', KEYS[2], order, ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[3])
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[3])
redis.call('PEXPIREAT', KEYS[6], ARGV[6])
return 1
"#
    ))
});

/// KEYS: rooms index. ARGV: prefix, now (Unix ms). Sweeps unjoined rooms past their deadline,
/// then returns how many rooms exist.
pub(crate) static COUNT_ROOMS: Lazy = Lazy::new(|| {
    Script::new(concat!(
        delete_room_fn!(),
        sweep_unjoined_fn!(),
        r#"
sweep_unjoined(ARGV[1], KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
"#
    ))
});

/// KEYS: rooms index. ARGV: prefix, now (Unix ms). Returns every room record in creation order.
pub(crate) static LIST_ROOMS: Lazy = Lazy::new(|| {
    Script::new(concat!(
        delete_room_fn!(),
        sweep_unjoined_fn!(),
        "sweep_unjoined(ARGV[1], KEYS[1], ARGV[2])",
        hget_each!(
            "redis.call('ZRANGE', KEYS[1], 0, -1)",
            "room_key(ARGV[1], id), 'record'"
        )
    ))
});

/// KEYS: rooms index. ARGV: prefix, now (Unix ms). Returns record JSON and member count per
/// room, flattened.
pub(crate) static LIST_ROOMS_WITH_COUNTS: Lazy = Lazy::new(|| {
    Script::new(concat!(
        delete_room_fn!(),
        sweep_unjoined_fn!(),
        r#"
sweep_unjoined(ARGV[1], KEYS[1], ARGV[2])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local record = redis.call('HGET', room_key(ARGV[1], id), 'record')
  if record then
    table.insert(out, record)
    table.insert(out, redis.call('ZCARD', room_members_key(ARGV[1], id)))
  end
end
return out
"#
    ))
});

/// KEYS: room, members, member records, order counter, node memberships, rooms index.
/// ARGV: socket id, member JSON, membership token, prefix, room id, now (Unix ms).
/// Returns {code, count}: 1 joined, 2 already a member, -1 no such room, -2 full.
/// A room still unjoined past its deadline is deleted here rather than joined.
pub(crate) static JOIN_ROOM: Lazy = Lazy::new(|| {
    Script::new(concat!(
        delete_room_fn!(),
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local count = redis.call('ZCARD', KEYS[2])
local deadline = redis.call('ZSCORE', unjoined_rooms_key(ARGV[4]), ARGV[5])
if deadline and count == 0 and tonumber(deadline) <= tonumber(ARGV[6]) then
  delete_room(ARGV[4], KEYS[6], ARGV[5])
  return {-1, 0}
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {2, count} end
local max = tonumber(redis.call('HGET', KEYS[1], 'max')) or 0
if count >= max then return {-2, count} end
local order = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], order, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[3])
if redis.call('ZREM', unjoined_rooms_key(ARGV[4]), ARGV[5]) == 1 then
  local record = cjson.decode(redis.call('HGET', KEYS[1], 'record'))
  redis.call('ZREM', unjoined_rooms_of_key(ARGV[4], record.createdBy), ARGV[5])
end
return {1, count + 1}
"#
    ))
});

/// KEYS: room, members, member records, rooms index, room history.
/// ARGV: socket id, room id, prefix.
/// Returns {code, count, deleted}: 1 left, -1 not a member. The last member out deletes the
/// room with its history.
pub(crate) static LEAVE_ROOM: Lazy = Lazy::new(|| {
    Script::new(concat!(
        token_fns!(),
        r#"
local json = redis.call('HGET', KEYS[3], ARGV[1])
if not json then return {-1, 0, 0} end
local member = cjson.decode(json)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', node_memberships_key(ARGV[3], member.nodeId), token(ARGV[2], ARGV[1]))
local count = redis.call('ZCARD', KEYS[2])
if count == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
  redis.call('ZREM', KEYS[4], ARGV[2])
  redis.call('ZREM', unjoined_rooms_key(ARGV[3]), ARGV[2])
  return {1, 0, 1}
end
return {1, count, 0}
"#
    ))
});

/// KEYS: members, member records. Returns the member JSONs in joining order.
pub(crate) static ROOM_MEMBERS: Lazy = Lazy::new(|| {
    Script::new(hget_each!(
        "redis.call('ZRANGE', KEYS[1], 0, -1)",
        "KEYS[2], id"
    ))
});

/// KEYS: node memberships, rooms index. ARGV: prefix.
/// Returns a flat list: room id, member JSON, remaining count, deleted (0/1), repeated.
pub(crate) static PURGE_NODE_ROOMS: Lazy = Lazy::new(|| {
    Script::new(concat!(
        token_fns!(),
        delete_room_fn!(),
        r#"
local p = ARGV[1]
local removed = {}
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local room, sid = split_token(t)
  if room then
    local json = redis.call('HGET', room_member_records_key(p, room), sid)
    if json then
      redis.call('HDEL', room_member_records_key(p, room), sid)
      redis.call('ZREM', room_members_key(p, room), sid)
      table.insert(removed, {room, json})
    end
  end
end
redis.call('DEL', KEYS[1])
local out = {}
local deleted = {}
for _, e in ipairs(removed) do
  local count = redis.call('ZCARD', room_members_key(p, e[1]))
  local gone = 0
  if count == 0 then
    gone = 1
    if not deleted[e[1]] then
      deleted[e[1]] = true
      delete_room(p, KEYS[2], e[1])
    end
  end
  table.insert(out, e[1])
  table.insert(out, e[2])
  table.insert(out, count)
  table.insert(out, gone)
end
return out
"#
    ))
});

/// KEYS: presence sockets, the user's socket set, the node's socket set.
/// ARGV: socket id, socket JSON, prefix. Returns 1 when it is the user's first socket.
pub(crate) static SOCKET_CONNECTED: Lazy = Lazy::new(|| {
    Script::new(concat!(
        unindex_socket_fn!(),
        r#"
local first = redis.call('SCARD', KEYS[2]) == 0
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then unindex_socket(ARGV[3], ARGV[1], cjson.decode(old)) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
if first then return 1 end
return 0
"#
    ))
});

/// KEYS: presence sockets, the user's socket set. ARGV: socket id, prefix.
/// Returns 1 when the socket was known and the user has no socket left.
pub(crate) static SOCKET_DISCONNECTED: Lazy = Lazy::new(|| {
    Script::new(concat!(
        unindex_socket_fn!(),
        r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local o = cjson.decode(old)
redis.call('HDEL', KEYS[1], ARGV[1])
unindex_socket(ARGV[2], ARGV[1], o)
if redis.call('SCARD', KEYS[2]) == 0 then return 1 end
return 0
"#
    ))
});

/// KEYS: presence sockets. ARGV: socket id, user id, new username.
pub(crate) static SET_USERNAME: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local o = cjson.decode(old)
if o.userId ~= ARGV[2] then return 0 end
o.username = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(o))
return 1
"#,
    )
});

/// KEYS: presence sockets, the user's socket set. Returns the user's socket JSONs.
pub(crate) static SOCKETS_OF: Lazy =
    Lazy::new(|| Script::new(hget_each!("redis.call('SMEMBERS', KEYS[2])", "KEYS[1], id")));

/// KEYS: the node's socket set, presence sockets. ARGV: prefix.
/// Returns one socket JSON per user who has no socket left after the purge.
pub(crate) static PURGE_NODE_PRESENCE: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local p = ARGV[1]
local first_seen = {}
local order = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local json = redis.call('HGET', KEYS[2], sid)
  if json then
    local o = cjson.decode(json)
    redis.call('HDEL', KEYS[2], sid)
    redis.call('SREM', presence_user_key(p, o.userId), sid)
    if not first_seen[o.userId] then
      first_seen[o.userId] = json
      table.insert(order, o.userId)
    end
  end
end
redis.call('DEL', KEYS[1])
local out = {}
for _, uid in ipairs(order) do
  if redis.call('SCARD', presence_user_key(p, uid)) == 0 then
    table.insert(out, first_seen[uid])
  end
end
return out
"#,
    )
});

/// Makes Redis hold exactly what one node reports it holds (after a Redis restart, or at start-up
/// to clear a previous incarnation's leftovers).
///
/// KEYS: presence sockets, node sockets, node memberships, rooms index, order counter.
/// ARGV: prefix, node id, socket count N, then N × (socket id, user id, socket JSON), then per
/// membership (room id, record JSON, capacity, socket id, member JSON).
/// Returns {sockets registered, memberships registered, rooms recreated}.
pub(crate) static RESYNC_NODE: Lazy = Lazy::new(|| {
    Script::new(concat!(
        token_fns!(),
        unindex_socket_fn!(),
        delete_room_fn!(),
        r#"
local p = ARGV[1]
local node = ARGV[2]
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local json = redis.call('HGET', KEYS[1], sid)
  if json then
    local o = cjson.decode(json)
    if o.nodeId == node then
      redis.call('HDEL', KEYS[1], sid)
      redis.call('SREM', presence_user_key(p, o.userId), sid)
    end
  end
end
redis.call('DEL', KEYS[2])
local touched = {}
for _, t in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local room, sid = split_token(t)
  if room then
    redis.call('HDEL', room_member_records_key(p, room), sid)
    redis.call('ZREM', room_members_key(p, room), sid)
    touched[room] = true
  end
end
redis.call('DEL', KEYS[3])
local nsockets = tonumber(ARGV[3])
local i = 4
for _ = 1, nsockets do
  local sid, uid, json = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  local old = redis.call('HGET', KEYS[1], sid)
  if old then unindex_socket(p, sid, cjson.decode(old)) end
  redis.call('HSET', KEYS[1], sid, json)
  redis.call('SADD', presence_user_key(p, uid), sid)
  redis.call('SADD', KEYS[2], sid)
end
local memberships = 0
local recreated = 0
while i + 4 <= #ARGV do
  local room, record, max, sid, json = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local rk = room_key(p, room)
  if redis.call('EXISTS', rk) == 0 then
    local order = redis.call('INCR', KEYS[5])
    redis.call('HSET', rk, 'record', record, 'max', max)
    redis.call('ZADD', KEYS[4], order, room)
    recreated = recreated + 1
  end
  if not redis.call('ZSCORE', room_members_key(p, room), sid) then
    redis.call('ZADD', room_members_key(p, room), redis.call('INCR', KEYS[5]), sid)
  end
  redis.call('HSET', room_member_records_key(p, room), sid, json)
  redis.call('SADD', KEYS[3], token(room, sid))
  memberships = memberships + 1
  touched[room] = nil
end
for room, _ in pairs(touched) do
  if redis.call('ZCARD', room_members_key(p, room)) == 0 then
    delete_room(p, KEYS[4], room)
  end
end
return {nsockets, memberships, recreated}
"#
    ))
});

/// KEYS: history stream, the room record for a room's scope (the stream again for any other).
/// ARGV: message JSON, capacity, TTL (ms), `1` when KEYS[2] must exist. Appends unless the scope
/// is a room that does not exist (so a deleted room's history is never started again by a late
/// message), trims to the capacity, and (re)starts the stream's TTL. Returns 1 when appended.
pub(crate) static APPEND_HISTORY: Lazy = Lazy::new(|| {
    Script::new(
        r#"
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[2], '*', 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#,
    )
});

/// KEYS: a game's sequence counter. ARGV: TTL (ms). The next number, with the TTL restarted.
pub(crate) static NEXT_GAME_SEQ: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"#,
    )
});

/// ARGV: ids. Returns each id escaped by Lua `esc` (for the tests that hold it to `key_part`).
#[cfg(any(test, feature = "test-support"))]
pub(crate) static ESCAPE_IDS: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local out = {}
for _, id in ipairs(ARGV) do table.insert(out, esc(id)) end
return out
"#,
    )
});

/// ARGV: prefix, then ids. Returns, per id, the names the Lua key functions build from it (room,
/// members, member records, room history, unjoined rooms of a creator, presence of a user, node
/// sockets, node memberships), then the unjoined-rooms set (for the tests that hold them to
/// [`crate::keys::Keys`]).
#[cfg(any(test, feature = "test-support"))]
pub(crate) static KEY_NAMES: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  for _, name in ipairs({room_key(p, id), room_members_key(p, id), room_member_records_key(p, id),
      room_history_key(p, id), unjoined_rooms_of_key(p, id), presence_user_key(p, id),
      node_sockets_key(p, id), node_memberships_key(p, id)}) do
    table.insert(out, name)
  end
end
table.insert(out, unjoined_rooms_key(p))
return out
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script the crate runs.
    fn every_script() -> Vec<(&'static str, &'static Script)> {
        vec![
            ("CREATE_ROOM", &CREATE_ROOM),
            ("COUNT_ROOMS", &COUNT_ROOMS),
            ("LIST_ROOMS", &LIST_ROOMS),
            ("LIST_ROOMS_WITH_COUNTS", &LIST_ROOMS_WITH_COUNTS),
            ("JOIN_ROOM", &JOIN_ROOM),
            ("LEAVE_ROOM", &LEAVE_ROOM),
            ("ROOM_MEMBERS", &ROOM_MEMBERS),
            ("PURGE_NODE_ROOMS", &PURGE_NODE_ROOMS),
            ("SOCKET_CONNECTED", &SOCKET_CONNECTED),
            ("SOCKET_DISCONNECTED", &SOCKET_DISCONNECTED),
            ("SET_USERNAME", &SET_USERNAME),
            ("SOCKETS_OF", &SOCKETS_OF),
            ("PURGE_NODE_PRESENCE", &PURGE_NODE_PRESENCE),
            ("RESYNC_NODE", &RESYNC_NODE),
            ("APPEND_HISTORY", &APPEND_HISTORY),
            ("NEXT_GAME_SEQ", &NEXT_GAME_SEQ),
            ("ESCAPE_IDS", &ESCAPE_IDS),
            ("KEY_NAMES", &KEY_NAMES),
        ]
    }

    /// The string literals (single- or double-quoted) of a piece of Lua.
    fn lua_literals(lua: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = lua;
        while let Some(open) = rest.find(['\'', '"']) {
            let quote = &rest[open..=open];
            let after = &rest[open + 1..];
            let Some(close) = after.find(quote) else {
                break;
            };
            out.push(&after[..close]);
            rest = &after[close + 1..];
        }
        out
    }

    #[test]
    fn no_script_spells_a_key_name_of_its_own() {
        let prelude = [esc_fn!(), &lua_key_functions()].concat();
        for (name, script) in every_script() {
            let body = script
                .source
                .strip_prefix(&prelude)
                .unwrap_or_else(|| panic!("{name} does not start with the key functions"));
            for literal in lua_literals(body) {
                // `:` alone is the membership token's separator, not part of a key name.
                assert!(
                    literal == ":" || !literal.contains(':'),
                    "{name} spells `{literal}`: build key names with the functions from keys.rs"
                );
                for part in crate::keys::LUA_KEY_PARTS {
                    assert!(
                        !literal.contains(part.trim_matches(':')),
                        "{name} spells `{literal}`, a part of a key name kept in keys.rs"
                    );
                }
            }
        }
    }

    #[test]
    fn membership_tokens_keep_ids_apart() {
        assert_eq!(membership_token("room", "sock"), "4:roomsock");
        assert_ne!(membership_token("ab", "c"), membership_token("a", "bc"));
        assert_eq!(
            membership_token("é", "s"),
            "2:és",
            "byte length, as Lua counts"
        );
    }
}
