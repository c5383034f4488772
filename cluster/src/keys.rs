//! Every Redis key and channel name the cluster crate uses, built in this one module.
//!
//! `cluster:message` and `cluster:stats:<serverId>` are fixed by the contract (`docs/protocol.md`,
//! section "Redis keys and channels") so that Node.js nodes of the original design can share the
//! cluster. Everything else lives under one configurable prefix (default `gateway:`), and the Lua
//! scripts build the names they need from the same parts (see `lua_key_functions`). Two layouts
//! ([`KeyLayout`]): the classic names of `docs/protocol.md` (single Redis, Sentinel), and on a
//! Redis Cluster the spread layout of `docs/sharded-adapter.md`, section 5, where each room, user
//! and node has a hash tag of its own and cluster-wide indexes live in [`INDEX_BUCKETS`] buckets.
//!
//! Ids chosen by clients (room ids, user ids, game ids, namespace names) may hold any character
//! (`docs/protocol.md`, section "Rooms and Socket.IO room names": no room id is reserved). Each one is escaped with [`key_part`] before it
//! becomes part of a key name, so no id can contain the `:` that separates a key's parts, end
//! early, or name another key: `x` and `x:members` are different rooms with different keys.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::history::HistoryScope;

/// The control channel every node publishes to and subscribes to.
pub const CONTROL_CHANNEL: &str = "cluster:message";

/// Prefix of the per-node stats keys.
pub const STATS_KEY_PREFIX: &str = "cluster:stats:";

/// `SCAN MATCH` pattern for every node's stats key.
pub const STATS_KEY_PATTERN: &str = "cluster:stats:*";

/// Default prefix of every other key.
pub const DEFAULT_PREFIX: &str = "gateway:";

/// The stats key of one node: `cluster:stats:<serverId>`.
pub fn stats_key(server_id: &str) -> String {
    format!("{STATS_KEY_PREFIX}{server_id}")
}

/// The server id a stats key belongs to, `None` for any other key.
pub fn server_id_of_stats_key(key: &str) -> Option<&str> {
    key.strip_prefix(STATS_KEY_PREFIX)
        .filter(|id| !id.is_empty())
}

// The fixed parts of the prefixed key names. `Keys` builds every name from them, and so do the
// Lua scripts for the keys that depend on stored data (see `lua_key_functions`), so the two
// cannot drift apart.
const ROOM: &str = "room:";
const ROOM_MEMBERS: &str = ":members";
const ROOM_MEMBER_RECORDS: &str = ":member";
const ROOMS_INDEX: &str = "rooms";
const UNJOINED_ROOMS: &str = "rooms:unjoined";
const UNJOINED_ROOMS_BY: &str = "rooms:unjoined:by:";
const HISTORY_ROOM: &str = "history:room:";
const PRESENCE_USER: &str = "presence:user:";
const NODE: &str = "node:";
const NODE_SOCKETS: &str = ":sockets";
const NODE_MEMBERSHIPS: &str = ":memberships";

/// Characters written as `%XX` (upper-case hex of the byte) inside a key name: the escape
/// character itself, the separator `:`, the hash-tag braces, and the `SCAN MATCH` wildcards. The
/// Lua scripts escape with the same set (`scripts::esc`), so keys built on either side agree.
fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        b'%' | b':' | b'{' | b'}' | b'*' | b'?' | b'[' | b']' | b'\\'
    )
}

/// A client-chosen id as it appears inside a key name: every character of `needs_escape`
/// becomes `%XX`, everything else is kept. The mapping is one-to-one, so two different ids never
/// share a key, and the result contains no `:`.
pub fn key_part(id: &str) -> Cow<'_, str> {
    if !id.bytes().any(needs_escape) {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() + 8);
    for c in id.chars() {
        match u8::try_from(c) {
            Ok(b) if needs_escape(b) => {
                let _ = write!(out, "%{b:02X}");
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// How the prefixed keys are laid out over a Redis Cluster's hash slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyLayout {
    /// Today's names (`docs/protocol.md`, section "Redis keys and channels"), unchanged: single
    /// Redis, Sentinel, and a Redis Cluster whose prefix carries one hash tag for everything.
    #[default]
    Classic,
    /// Each room's keys share a hash tag of their own, each user's likewise, each node's likewise;
    /// cluster-wide listings live in [`INDEX_BUCKETS`] bucket keys spread over the slots
    /// (`docs/sharded-adapter.md`, section 5). Chosen for `redis-cluster://` URLs.
    Spread,
}

/// Buckets of each cluster-wide index in the [`KeyLayout::Spread`] layout (rooms, unjoined
/// rooms, online sockets). Part of the layout, not a setting: nodes disagreeing on it would
/// look for entries in different keys.
pub const INDEX_BUCKETS: usize = 64;

/// The bucket of an index entry: FNV-1a of its id, modulo [`INDEX_BUCKETS`]. Stable across
/// processes and versions (unlike `std`'s hasher), so every node finds an entry where another
/// node put it.
pub fn index_bucket(id: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // The modulo is below INDEX_BUCKETS, so it fits.
    usize::try_from(h % INDEX_BUCKETS as u64).unwrap_or_default()
}

/// Undoes [`key_part`] (for node ids read back from key names).
pub fn key_part_decoded(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// Kinds of hash tag in the spread layout. The tag is `{<kind>:<escaped id>}`: never empty (an
// empty tag would make Redis hash the whole name, splitting a room's keys over slots), and the
// escaped id holds no brace, so no id can end the tag early or choose another one.
const TAG_ROOM: &str = "r";
const TAG_USER: &str = "u";
const TAG_NODE: &str = "n";
const TAG_PRIVATE: &str = "p";
const TAG_NAMESPACE: &str = "h";
const TAG_GAME: &str = "g";
const TAG_ROOMS_BUCKET: &str = "ri";
const TAG_UNJOINED_BUCKET: &str = "ru";
const TAG_SOCKETS_BUCKET: &str = "ps";

/// Names of the prefixed keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    layout: KeyLayout,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    /// Keys under `prefix` (used verbatim, so include the separator: `gateway:`), in the
    /// [`KeyLayout::Classic`] layout.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self::with_layout(prefix, KeyLayout::Classic)
    }

    /// Keys under `prefix` in `layout`.
    pub fn with_layout(prefix: impl Into<String>, layout: KeyLayout) -> Self {
        Self {
            prefix: prefix.into(),
            layout,
        }
    }

    /// The prefix itself (Lua scripts build per-node and per-user keys from it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The layout in use.
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    /// Whether the layout is [`KeyLayout::Spread`].
    pub fn is_spread(&self) -> bool {
        self.layout == KeyLayout::Spread
    }

    /// An id as it appears in a key name: escaped, and in the spread layout wrapped in a hash
    /// tag of its kind.
    fn part(&self, kind: &str, id: &str) -> String {
        match self.layout {
            KeyLayout::Classic => key_part(id).into_owned(),
            KeyLayout::Spread => format!("{{{kind}:{}}}", key_part(id)),
        }
    }

    /// A node id in a key name: verbatim in the classic layout (as today), escaped and tagged in
    /// the spread one.
    fn node_part(&self, node_id: &str) -> String {
        match self.layout {
            KeyLayout::Classic => node_id.to_owned(),
            KeyLayout::Spread => self.part(TAG_NODE, node_id),
        }
    }

    /// Bucket `k` of a spread index: `<prefix><name>:{<kind>:<k>}`.
    fn bucket(&self, name: &str, kind: &str, k: usize) -> String {
        format!("{}{name}:{{{kind}:{k}}}", self.prefix)
    }

    /// Bucket `k` (below [`INDEX_BUCKETS`]) of the rooms index (spread layout): room ids scored
    /// by creation time (Unix µs).
    pub fn rooms_bucket(&self, k: usize) -> String {
        self.bucket(ROOMS_INDEX, TAG_ROOMS_BUCKET, k)
    }

    /// Bucket `k` of the unjoined rooms (spread layout): room ids scored by deadline (Unix ms).
    pub fn unjoined_bucket(&self, k: usize) -> String {
        self.bucket(UNJOINED_ROOMS, TAG_UNJOINED_BUCKET, k)
    }

    /// Bucket `k` of the online sockets (spread layout): hash of socket id to JSON
    /// [`crate::OnlineSocket`], the socket's bucket given by [`index_bucket`] of its id.
    pub fn sockets_bucket(&self, k: usize) -> String {
        self.bucket("presence:sockets", TAG_SOCKETS_BUCKET, k)
    }

    /// Hash of one room: fields `record` (JSON [`crate::RoomRecord`]) and `max` (capacity).
    pub fn room(&self, room_id: &str) -> String {
        format!("{}{ROOM}{}", self.prefix, self.part(TAG_ROOM, room_id))
    }

    /// Sorted set of a room's socket ids, scored by joining order.
    pub fn room_members(&self, room_id: &str) -> String {
        format!("{}{ROOM_MEMBERS}", self.room(room_id))
    }

    /// Hash of a room's members: socket id to JSON [`crate::Member`].
    pub fn room_member_records(&self, room_id: &str) -> String {
        format!("{}{ROOM_MEMBER_RECORDS}", self.room(room_id))
    }

    /// Sorted set of the ids of rooms nobody has joined yet, scored by the time (Unix ms) at which
    /// they are deleted if still unjoined.
    pub fn unjoined_rooms(&self) -> String {
        format!("{}{UNJOINED_ROOMS}", self.prefix)
    }

    /// Sorted set of the unjoined rooms one user created, scored like [`Keys::unjoined_rooms`].
    pub fn unjoined_rooms_of(&self, user_id: &str) -> String {
        format!(
            "{}{UNJOINED_ROOMS_BY}{}",
            self.prefix,
            self.part(TAG_USER, user_id)
        )
    }

    /// Marker written once into a Redis that holds this cluster's bans; its absence after a
    /// reconnect means Redis lost its data and the nodes must register the bans they know again.
    pub fn bans_marker(&self) -> String {
        format!("{}bans:epoch", self.prefix)
    }

    /// `SCAN MATCH` pattern for every ban key.
    pub fn ban_pattern(&self) -> String {
        format!("{}ban:*", self.prefix)
    }

    /// Sorted set of every room id, scored by creation order.
    pub fn rooms_index(&self) -> String {
        format!("{}{ROOMS_INDEX}", self.prefix)
    }

    /// Counter giving rooms and memberships a cluster-wide order.
    pub fn order_counter(&self) -> String {
        format!("{}seq", self.prefix)
    }

    /// Hash of every online socket: socket id to JSON [`crate::OnlineSocket`].
    pub fn presence_sockets(&self) -> String {
        format!("{}presence:sockets", self.prefix)
    }

    /// Set of one user's socket ids (classic layout); in the spread layout, hash of the user's
    /// socket ids to their JSON [`crate::OnlineSocket`].
    pub fn presence_user(&self, user_id: &str) -> String {
        format!(
            "{}{PRESENCE_USER}{}",
            self.prefix,
            self.part(TAG_USER, user_id)
        )
    }

    /// Set of the socket ids a node holds.
    pub fn node_sockets(&self, node_id: &str) -> String {
        format!(
            "{}{NODE}{}{NODE_SOCKETS}",
            self.prefix,
            self.node_part(node_id)
        )
    }

    /// Set of a node's memberships, each a JSON array `[roomId, socketId]`.
    pub fn node_memberships(&self, node_id: &str) -> String {
        format!(
            "{}{NODE}{}{NODE_MEMBERSHIPS}",
            self.prefix,
            self.node_part(node_id)
        )
    }

    /// `SCAN MATCH` pattern for every per-node key (to find nodes that hold state).
    pub fn node_pattern(&self) -> String {
        format!("{}{NODE}*", self.prefix)
    }

    /// The node id of a per-node key, `None` for any other key.
    pub fn node_id_of_key<'a>(&self, key: &'a str) -> Option<Cow<'a, str>> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix(NODE)?;
        let part = rest
            .strip_suffix(NODE_SOCKETS)
            .or_else(|| rest.strip_suffix(NODE_MEMBERSHIPS))?;
        let id = match self.layout {
            KeyLayout::Classic => Cow::Borrowed(part),
            KeyLayout::Spread => Cow::Owned(key_part_decoded(
                part.strip_prefix(&format!("{{{TAG_NODE}:"))?
                    .strip_suffix('}')?,
            )?),
        };
        (!id.is_empty()).then_some(id)
    }

    /// A node's liveness key, rewritten every second or so with a TTL of a few seconds: the fast
    /// death signal beside the contract's long-lived stats key.
    pub fn alive(&self, node_id: &str) -> String {
        format!("{}alive:{}", self.prefix, self.node_part(node_id))
    }

    /// Left by the peer that purged a node (after the purge): the node, if it was only stalled
    /// or cut off, finds it and registers what it holds again.
    pub fn purged_marker(&self, node_id: &str) -> String {
        format!("{}purged:{}", self.prefix, self.node_part(node_id))
    }

    /// The claim a node takes (`SET NX PX`) before purging a dead node, so only one does.
    pub fn purge_claim(&self, node_id: &str) -> String {
        format!("{}purge:{}", self.prefix, self.node_part(node_id))
    }

    /// A user's ban (JSON [`crate::Ban`]), with a Redis TTL when it expires.
    pub fn ban(&self, user_id: &str) -> String {
        format!("{}ban:{}", self.prefix, self.part(TAG_USER, user_id))
    }

    /// The stream holding a scope's history.
    pub fn history(&self, scope: &HistoryScope) -> String {
        match scope {
            // The room's own tag: its history is deleted with it, in the same script.
            HistoryScope::Room(id) => {
                format!("{}{HISTORY_ROOM}{}", self.prefix, self.part(TAG_ROOM, id))
            }
            // Escaped ids hold no `:`, so the separator keeps `a:b`+`c` apart from `a`+`b:c`.
            HistoryScope::Private(a, b) => {
                let pair = format!("{}:{}", key_part(a), key_part(b));
                let pair = match self.layout {
                    KeyLayout::Classic => pair,
                    KeyLayout::Spread => format!("{{{TAG_PRIVATE}:{pair}}}"),
                };
                format!("{}history:private:{pair}", self.prefix)
            }
            HistoryScope::Namespace(ns) => {
                format!("{}history:ns:{}", self.prefix, self.part(TAG_NAMESPACE, ns))
            }
        }
    }

    /// A game's sequence counter.
    pub fn game_seq(&self, game_id: &str) -> String {
        format!("{}game:{}:seq", self.prefix, self.part(TAG_GAME, game_id))
    }

    /// Counter of one user's wrong room passwords in the current window (expires with it).
    pub fn password_failures_of_user(&self, user_id: &str) -> String {
        format!(
            "{}pwfail:user:{}",
            self.prefix,
            self.part(TAG_USER, user_id)
        )
    }

    /// Counter of one room's wrong passwords in the current window (expires with it).
    pub fn password_failures_of_room(&self, room_id: &str) -> String {
        format!(
            "{}pwfail:room:{}",
            self.prefix,
            self.part(TAG_ROOM, room_id)
        )
    }
}

/// Lua functions building the key names that depend on stored data (a member's node, a socket's
/// user, a room id read from an index), from the same parts as [`Keys`]. Each takes the prefix `p`
/// first; ids go through Lua `esc` exactly where [`Keys`] uses [`key_part`], so the scripts that
/// include this text must define `esc` before it.
pub(crate) fn lua_key_functions() -> String {
    format!(
        "
local function room_key(p, room) return p .. '{ROOM}' .. esc(room) end
local function room_members_key(p, room) return room_key(p, room) .. '{ROOM_MEMBERS}' end
local function room_member_records_key(p, room) return room_key(p, room) .. '{ROOM_MEMBER_RECORDS}' end
local function room_history_key(p, room) return p .. '{HISTORY_ROOM}' .. esc(room) end
local function unjoined_rooms_key(p) return p .. '{UNJOINED_ROOMS}' end
local function unjoined_rooms_of_key(p, user) return p .. '{UNJOINED_ROOMS_BY}' .. esc(user) end
local function presence_user_key(p, user) return p .. '{PRESENCE_USER}' .. esc(user) end
local function node_sockets_key(p, node) return p .. '{NODE}' .. node .. '{NODE_SOCKETS}' end
local function node_memberships_key(p, node) return p .. '{NODE}' .. node .. '{NODE_MEMBERSHIPS}' end
"
    )
}

/// Every fixed part [`lua_key_functions`] splices into Lua string literals (for the tests).
#[cfg(test)]
pub(crate) const LUA_KEY_PARTS: [&str; 10] = [
    ROOM,
    ROOM_MEMBERS,
    ROOM_MEMBER_RECORDS,
    UNJOINED_ROOMS,
    UNJOINED_ROOMS_BY,
    HISTORY_ROOM,
    PRESENCE_USER,
    NODE,
    NODE_SOCKETS,
    NODE_MEMBERSHIPS,
];

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
