//! The script re-registering one node's state.

use super::{Lazy, Script};

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
