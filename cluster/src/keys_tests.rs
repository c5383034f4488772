//! Tests of the key names (`keys.rs`): the contract's fixed names, escaping, and the spread
//! layout's one-slot-per-room/user/node rule.

use super::*;

#[test]
fn contract_names_are_fixed() {
    assert_eq!(CONTROL_CHANNEL, "cluster:message");
    assert_eq!(stats_key("node-1"), "cluster:stats:node-1");
    assert_eq!(STATS_KEY_PATTERN, "cluster:stats:*");
    assert_eq!(
        server_id_of_stats_key("cluster:stats:node-1"),
        Some("node-1")
    );
    assert_eq!(server_id_of_stats_key("cluster:stats:"), None);
    assert_eq!(server_id_of_stats_key("gateway:node:x:sockets"), None);
}

#[test]
fn prefixed_names() {
    let k = Keys::default();
    assert_eq!(k.prefix(), "gateway:");
    assert_eq!(k.room("r1"), "gateway:room:r1");
    assert_eq!(k.room_members("r1"), "gateway:room:r1:members");
    assert_eq!(k.room_member_records("r1"), "gateway:room:r1:member");
    assert_eq!(k.rooms_index(), "gateway:rooms");
    assert_eq!(k.order_counter(), "gateway:seq");
    assert_eq!(k.presence_sockets(), "gateway:presence:sockets");
    assert_eq!(k.presence_user("u1"), "gateway:presence:user:u1");
    assert_eq!(k.node_sockets("n1"), "gateway:node:n1:sockets");
    assert_eq!(k.node_memberships("n1"), "gateway:node:n1:memberships");
    assert_eq!(k.node_pattern(), "gateway:node:*");
    assert_eq!(k.purge_claim("n1"), "gateway:purge:n1");
    assert_eq!(k.ban("u1"), "gateway:ban:u1");
    assert_eq!(k.game_seq("g1"), "gateway:game:g1:seq");
    assert_eq!(k.password_failures_of_user("u1"), "gateway:pwfail:user:u1");
    assert_eq!(k.password_failures_of_room("r1"), "gateway:pwfail:room:r1");
    assert_ne!(
        k.password_failures_of_user("a:b"),
        k.password_failures_of_room("b"),
        "escaped ids cannot reach another scope's key"
    );
    assert_eq!(
        k.history(&HistoryScope::Room("r1".into())),
        "gateway:history:room:r1"
    );
    assert_eq!(
        k.history(&HistoryScope::Namespace("/chat".into())),
        "gateway:history:ns:/chat"
    );
    assert_eq!(
        k.history(&HistoryScope::private("bob", "al")),
        "gateway:history:private:al:bob"
    );
    assert_ne!(
        k.history(&HistoryScope::private("a:b", "c")),
        k.history(&HistoryScope::private("a", "b:c"))
    );
    assert_eq!(Keys::new("{t}:").room("x"), "{t}:room:x");
}

#[test]
fn client_chosen_ids_never_share_or_split_a_key() {
    let k = Keys::default();
    assert_eq!(key_part("plain-id é"), "plain-id é");
    assert_eq!(
        key_part("a:b%c{d}*?[]\\"),
        "a%3Ab%25c%7Bd%7D%2A%3F%5B%5D%5C"
    );
    assert_eq!(k.room("x:members"), "gateway:room:x%3Amembers");
    assert_ne!(k.room("x:members"), k.room_members("x"));
    assert_ne!(k.room("x:member"), k.room_member_records("x"));
    assert_ne!(k.room("%3A"), k.room(":"));
    assert_ne!(k.game_seq("a:seq"), k.game_seq("a"));
    assert_ne!(k.presence_user("a:b"), k.presence_user("a%3Ab"));
    assert_ne!(
        k.history(&HistoryScope::private("a:b", "c")),
        k.history(&HistoryScope::private("a", "b:c"))
    );
    for id in ["x", "x:members", ":", "%", "{t}", "a*b", "é:ü"] {
        assert!(!key_part(id).contains(':'), "{id}");
        assert_eq!(
            k.room(id).strip_prefix("gateway:room:"),
            Some(&*key_part(id))
        );
    }
}

#[test]
fn lua_key_parts_are_plain_lua_literals() {
    // Spliced between single quotes: a quote or a backslash would change the Lua string.
    for part in LUA_KEY_PARTS {
        assert!(!part.contains(['\'', '\\', '\n']), "{part}");
    }
    let lua = lua_key_functions();
    for part in LUA_KEY_PARTS {
        assert!(
            lua.contains(&format!("'{part}'")),
            "{part} missing from the Lua functions"
        );
    }
}

fn spread() -> Keys {
    Keys::with_layout(DEFAULT_PREFIX, KeyLayout::Spread)
}

fn slot(key: &str) -> u16 {
    testkit::redis_cluster::key_slot(key.as_bytes())
}

/// Every key of one room (record, members, member records, history).
fn room_keys(k: &Keys, id: &str) -> Vec<String> {
    vec![
        k.room(id),
        k.room_members(id),
        k.room_member_records(id),
        k.history(&HistoryScope::Room(id.into())),
    ]
}

#[test]
fn spread_names() {
    let k = spread();
    assert_eq!(k.room("r1"), "gateway:room:{r:r1}");
    assert_eq!(k.room_members("r1"), "gateway:room:{r:r1}:members");
    assert_eq!(k.room_member_records("r1"), "gateway:room:{r:r1}:member");
    assert_eq!(
        k.history(&HistoryScope::Room("r1".into())),
        "gateway:history:room:{r:r1}"
    );
    assert_eq!(k.presence_user("u1"), "gateway:presence:user:{u:u1}");
    assert_eq!(
        k.unjoined_rooms_of("u1"),
        "gateway:rooms:unjoined:by:{u:u1}"
    );
    assert_eq!(k.ban("u1"), "gateway:ban:{u:u1}");
    assert_eq!(k.node_sockets("n1"), "gateway:node:{n:n1}:sockets");
    assert_eq!(k.node_memberships("n1"), "gateway:node:{n:n1}:memberships");
    assert_eq!(k.alive("n1"), "gateway:alive:{n:n1}");
    assert_eq!(k.purge_claim("n1"), "gateway:purge:{n:n1}");
    assert_eq!(k.purged_marker("n1"), "gateway:purged:{n:n1}");
    assert_eq!(k.game_seq("g1"), "gateway:game:{g:g1}:seq");
    assert_eq!(
        k.password_failures_of_user("u1"),
        "gateway:pwfail:user:{u:u1}"
    );
    assert_eq!(
        k.password_failures_of_room("r1"),
        "gateway:pwfail:room:{r:r1}"
    );
    assert_eq!(
        k.history(&HistoryScope::private("bob", "al")),
        "gateway:history:private:{p:al:bob}"
    );
    assert_eq!(
        k.history(&HistoryScope::Namespace("/chat".into())),
        "gateway:history:ns:{h:/chat}"
    );
    assert_eq!(k.rooms_bucket(7), "gateway:rooms:{ri:7}");
    assert_eq!(k.unjoined_bucket(7), "gateway:rooms:unjoined:{ru:7}");
    assert_eq!(k.sockets_bucket(7), "gateway:presence:sockets:{ps:7}");
    // The patterns still find ban and node keys.
    assert!(
        k.ban("x")
            .starts_with(k.ban_pattern().trim_end_matches('*'))
    );
    assert!(
        k.node_sockets("x")
            .starts_with(k.node_pattern().trim_end_matches('*'))
    );
    // The classic layout is today's, whatever else changes.
    assert_eq!(Keys::default().layout(), KeyLayout::Classic);
    assert_eq!(Keys::default().room("r1"), "gateway:room:r1");
}

#[test]
fn a_rooms_keys_share_one_slot_and_rooms_spread_over_many() {
    let k = spread();
    let ids = ["r", "", "x:members", "a{b}", "}{", "%7B", "é", "{r:q}"];
    for id in ids {
        let keys = room_keys(&k, id);
        assert!(
            keys.iter().all(|key| slot(key) == slot(&keys[0])),
            "{id}: {keys:?}"
        );
    }
    let slots: std::collections::HashSet<u16> = (0..200)
        .map(|i| slot(&k.room(&format!("room-{i}"))))
        .collect();
    assert!(slots.len() > 190, "200 rooms on only {} slots", slots.len());
    assert_ne!(slot(&k.room("a")), slot(&k.room("b")));
}

#[test]
fn a_users_and_a_nodes_keys_share_one_slot() {
    let k = spread();
    for user in ["u", "", "a:b", "{x}", "é"] {
        let keys = [
            k.presence_user(user),
            k.unjoined_rooms_of(user),
            k.ban(user),
        ];
        assert!(
            keys.iter().all(|key| slot(key) == slot(&keys[0])),
            "{keys:?}"
        );
    }
    for node in ["n", "node-1", "a:b", "{x}"] {
        let keys = [
            k.node_sockets(node),
            k.node_memberships(node),
            k.alive(node),
            k.purge_claim(node),
            k.purged_marker(node),
        ];
        assert!(
            keys.iter().all(|key| slot(key) == slot(&keys[0])),
            "{keys:?}"
        );
    }
    assert_ne!(slot(&k.presence_user("u1")), slot(&k.presence_user("u2")));
}

#[test]
fn ids_cannot_smuggle_a_hash_tag() {
    let k = spread();
    // A room named like another room's tag stays on its own slot, and its tag is never cut
    // short by a brace of its id.
    for (id, other) in [("{r:a}", "a"), ("a}", "a"), ("}", ""), ("{", "")] {
        assert!(!key_part(id).contains(['{', '}']), "{id}");
        assert_eq!(k.room(id), format!("gateway:room:{{r:{}}}", key_part(id)));
        assert_ne!(k.room(id), k.room(other));
    }
    // The first brace pair of every spread name is the id's own tag: the prefix has none.
    let name = k.room("{x}y");
    let open = name.find('{').unwrap_or_default();
    let close = name.find('}').unwrap_or_default();
    assert_eq!(&name[open..=close], "{r:%7Bx%7Dy}");
}

#[test]
fn index_buckets_are_stable_and_spread() {
    // Fixed values: every node, of every version, must put an id in the same bucket.
    assert_eq!(
        index_bucket(""),
        0xcbf2_9ce4_8422_2325_u64 as usize % INDEX_BUCKETS
    );
    let used: std::collections::HashSet<usize> = (0..1000)
        .map(|i| index_bucket(&format!("room-{i}")))
        .collect();
    assert_eq!(used.len(), INDEX_BUCKETS);
    let slots: std::collections::HashSet<u16> = (0..INDEX_BUCKETS)
        .map(|b| slot(&spread().rooms_bucket(b)))
        .collect();
    assert_eq!(slots.len(), INDEX_BUCKETS, "buckets share slots");
}

#[test]
fn node_ids_round_trip_through_spread_names() {
    let k = spread();
    for id in ["n-1", "a:b", "{x}", "50%", "é"] {
        assert_eq!(k.node_id_of_key(&k.node_sockets(id)).as_deref(), Some(id));
        assert_eq!(
            k.node_id_of_key(&k.node_memberships(id)).as_deref(),
            Some(id)
        );
    }
    assert_eq!(k.node_id_of_key("gateway:node:{n:}:sockets"), None);
    assert_eq!(k.node_id_of_key("gateway:node:n:sockets"), None);
    assert_eq!(key_part_decoded("%ZZ"), None);
    assert_eq!(key_part_decoded("%4"), None);
}

#[test]
fn node_ids_are_read_back_from_node_keys() {
    let k = Keys::default();
    assert_eq!(
        k.node_id_of_key(&k.node_sockets("n-1")).as_deref(),
        Some("n-1")
    );
    assert_eq!(
        k.node_id_of_key(&k.node_memberships("a:b")).as_deref(),
        Some("a:b")
    );
    assert_eq!(k.node_id_of_key("gateway:node::sockets"), None);
    assert_eq!(k.node_id_of_key("other:node:n:sockets"), None);
    assert_eq!(k.node_id_of_key("gateway:room:r"), None);
}
