//! Scripts of the room registry.

use super::{Lazy, Script};

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
