//! Scripts of presence.

use super::{Lazy, Script};

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
