//! Lua scripts for every multi-step change that must be atomic cluster-wide.
//!
//! Redis runs a script without interleaving any other command, so a capacity check and the insert,
//! a removal and the "was that the last one?" check, or a whole purge, are each one step.
//! Keys that depend on stored data (a member's node, a socket's user) are built inside the script
//! from the prefix passed as an argument, by Lua functions that [`crate::keys`] generates from the
//! same parts as [`crate::keys::Keys`] (`room_key(p, id)`, `presence_user_key(p, id)`, ...);
//! no script spells a key name itself, which a test checks.
//!
//! The scripts of the spread layout (`spread.rs`) are the exception to building names inside a
//! script: on a Redis Cluster a script may touch only the keys it declares, so they take every
//! key in KEYS and touch one hash tag each.
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

/// Splits a token built by [`membership_token`] into room id and socket id.
pub(crate) fn split_membership_token(token: &str) -> Option<(&str, &str)> {
    let (len, rest) = token.split_once(':')?;
    let len: usize = len.parse().ok()?;
    (rest.is_char_boundary(len) && len <= rest.len()).then(|| rest.split_at(len))
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

// After the macros: a module sees only the macros defined above its declaration.
mod failures;
mod games;
mod history;
mod presence;
mod resync;
mod rooms;
mod spread;

pub(crate) use failures::{FAILURE_WINDOW, RECORD_FAILURE};
pub(crate) use games::NEXT_GAME_SEQ;
pub(crate) use history::APPEND_HISTORY;
pub(crate) use presence::{
    PURGE_NODE_PRESENCE, SET_USERNAME, SOCKET_CONNECTED, SOCKET_DISCONNECTED, SOCKETS_OF,
};
pub(crate) use resync::RESYNC_NODE;
pub(crate) use rooms::{
    COUNT_ROOMS, CREATE_ROOM, JOIN_ROOM, LEAVE_ROOM, LIST_ROOMS, LIST_ROOMS_WITH_COUNTS,
    PURGE_NODE_ROOMS, ROOM_MEMBERS,
};
pub(crate) use spread::{
    CREATE_ROOM_SPREAD, DELETE_IF_EMPTY_SPREAD, EXPIRE_IF_UNJOINED_SPREAD, HSET_IF_PRESENT,
    JOIN_ROOM_SPREAD, LEAVE_ROOM_SPREAD, REMOVE_MEMBERS_SPREAD, RESERVE_UNJOINED,
    RESYNC_MEMBER_SPREAD, USER_SOCKET_ADD, USER_SOCKET_REMOVE, USER_SOCKET_RENAME,
};

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
            ("FAILURE_WINDOW", &FAILURE_WINDOW),
            ("RECORD_FAILURE", &RECORD_FAILURE),
            ("CREATE_ROOM_SPREAD", &CREATE_ROOM_SPREAD),
            ("RESERVE_UNJOINED", &RESERVE_UNJOINED),
            ("JOIN_ROOM_SPREAD", &JOIN_ROOM_SPREAD),
            ("LEAVE_ROOM_SPREAD", &LEAVE_ROOM_SPREAD),
            ("REMOVE_MEMBERS_SPREAD", &REMOVE_MEMBERS_SPREAD),
            ("DELETE_IF_EMPTY_SPREAD", &DELETE_IF_EMPTY_SPREAD),
            ("RESYNC_MEMBER_SPREAD", &RESYNC_MEMBER_SPREAD),
            ("EXPIRE_IF_UNJOINED_SPREAD", &EXPIRE_IF_UNJOINED_SPREAD),
            ("HSET_IF_PRESENT", &HSET_IF_PRESENT),
            ("USER_SOCKET_ADD", &USER_SOCKET_ADD),
            ("USER_SOCKET_REMOVE", &USER_SOCKET_REMOVE),
            ("USER_SOCKET_RENAME", &USER_SOCKET_RENAME),
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
    fn membership_tokens_split_back() {
        for (room, sid) in [
            ("room", "sock"),
            ("a:b", "c"),
            ("é", "s"),
            ("", "s"),
            ("r", ""),
        ] {
            let t = membership_token(room, sid);
            assert_eq!(split_membership_token(&t), Some((room, sid)));
        }
        for bad in ["", "x", "9:ab", "1:", "-1:ab", "3:é", "1:é"] {
            assert_eq!(split_membership_token(bad), None, "{bad}");
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
