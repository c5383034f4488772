//! The Redis Cluster harness itself, on real `redis-server` processes: it forms a cluster
//! whose slot arithmetic matches Redis, counts sharded subscribers, moves a slot with its keys
//! (dropping the slot's sharded subscriptions, as Redis does), and survives a primary's death
//! by promoting its replica.

use std::net::{SocketAddr, TcpStream};

use testkit::redis_cluster::{
    RedisCluster, RedisClusterError, RedisClusterSpec, Reply, Role, SLOT_COUNT, key_slot,
};

/// A bulk string reply.
fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

/// The push a shard (un)subscription gets: `[kind, channel, subscriptions left]`.
fn push(kind: &str, channel: &str, count: i64) -> Reply {
    Reply::Array(Some(vec![bulk(kind), bulk(channel), Reply::Integer(count)]))
}

#[test]
fn a_cluster_forms_moves_a_slot_and_fails_over_a_primary() -> Result<(), RedisClusterError> {
    let mut cluster = RedisCluster::start()?;
    let url = cluster.url();
    assert!(url.starts_with("redis-cluster://127.0.0.1:"), "{url}");
    assert_eq!(url.matches("node=").count(), 5, "{url}");

    let nodes = cluster.nodes()?;
    assert_eq!(nodes.len(), 6);
    let primaries: Vec<_> = nodes.iter().filter(|n| n.is_primary()).collect();
    assert_eq!(primaries.len(), 3);
    let covered: u32 = primaries
        .iter()
        .flat_map(|p| p.slots.iter())
        .map(|&(lo, hi)| u32::from(hi - lo) + 1)
        .sum();
    assert_eq!(covered, u32::from(SLOT_COUNT), "every slot has an owner");
    for replica in nodes.iter().filter(|n| !n.is_primary()) {
        let Role::Replica { primary_id } = &replica.role else {
            unreachable!("filtered on replicas");
        };
        assert!(primaries.iter().any(|p| &p.id == primary_id));
    }

    // Our slot arithmetic is Redis's.
    let mut any = cluster.connect(cluster.live_ports()[0])?;
    for key in [
        "foo",
        "socket.io#/#",
        "socket.io#/#room1#",
        "{gateway}:rooms",
        "a{b}c",
        "x{}y",
    ] {
        assert_eq!(
            any.command(&["CLUSTER", "KEYSLOT", key])?,
            Reply::Integer(i64::from(key_slot(key.as_bytes()))),
            "slot of {key:?}"
        );
    }

    // A sharded subscriber is counted; a slot move drops it with a `sunsubscribe` push (what
    // the sharded adapter has to answer by subscribing again at the new owner).
    let channel = "socket.io#/#harness-room#";
    let channel_owner = cluster.slot_owner_of(channel)?;
    let mut subscriber = cluster.connect(channel_owner.port)?;
    assert_eq!(
        subscriber.command(&["SSUBSCRIBE", channel])?,
        push("ssubscribe", channel, 1)
    );
    assert_eq!(cluster.shard_subscribers(channel)?, 1);
    let elsewhere = cluster
        .primaries()?
        .into_iter()
        .find(|p| p.id != channel_owner.id)
        .ok_or_else(|| RedisClusterError::Topology("one primary only".into()))?;
    assert_eq!(
        cluster.migrate_slot(key_slot(channel.as_bytes()), &elsewhere)?,
        0
    );
    assert_eq!(subscriber.receive()?, push("sunsubscribe", channel, 0));
    assert_eq!(cluster.shard_subscribers(channel)?, 0);

    let usage = cluster.primary_usage()?;
    assert_eq!(usage.len(), 3);
    assert!(
        usage
            .iter()
            .all(|u| u.commands > 0 && u.net_input_bytes > 0)
    );

    // A slot moves with its keys, and the new owner serves them.
    let keys = ["{moving}a", "{moving}b", "{moving}c"];
    let slot = key_slot(b"{moving}");
    let owner = cluster.slot_owner(slot)?;
    let mut conn = cluster.connect(owner.port)?;
    for key in keys {
        conn.command(&["SET", key, "v"])?;
    }
    let target = cluster
        .primaries()?
        .into_iter()
        .find(|p| p.id != owner.id)
        .ok_or_else(|| RedisClusterError::Topology("one primary only".into()))?;
    assert_eq!(cluster.migrate_slot(slot, &target)?, keys.len());
    assert_eq!(cluster.slot_owner(slot)?.id, target.id);
    let mut at_target = cluster.connect(target.port)?;
    for key in keys {
        assert_eq!(
            at_target.command(&["GET", key])?,
            Reply::Bulk(Some(b"v".to_vec()))
        );
    }
    match conn.command(&["GET", keys[0]]) {
        Err(RedisClusterError::Reply { message, .. }) => {
            assert!(message.starts_with("MOVED"), "{message}");
        }
        other => panic!("the old owner still answers for the slot: {other:?}"),
    }
    assert_eq!(cluster.migrate_slot(slot, &target)?, 0, "already there");

    // The primary owning a key dies; its replica takes over with the replicated data.
    let owner = cluster.slot_owner_of("{survivor}")?;
    let mut conn = cluster.connect(owner.port)?;
    conn.command(&["SET", "{survivor}k", "kept"])?;
    assert_eq!(conn.command(&["WAIT", "1", "5000"])?, Reply::Integer(1));
    let pid = cluster.pid(owner.port).expect("the owner is alive");
    let promoted = cluster.kill_primary(&owner)?;
    assert_ne!(promoted.port, owner.port);
    assert!(promoted.is_primary());
    assert!(cluster.pid(owner.port).is_none());
    assert!(
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], owner.port))).is_err(),
        "the killed primary (pid {pid}) still accepts connections"
    );
    assert_eq!(cluster.slot_owner_of("{survivor}")?.id, promoted.id);
    assert_eq!(
        cluster
            .connect(promoted.port)?
            .command(&["GET", "{survivor}k"])?,
        Reply::Bulk(Some(b"kept".to_vec()))
    );
    assert_eq!(cluster.live_ports().len(), 5);

    // With no replica left for the promoted node, a second kill is refused, not attempted.
    let orphan = cluster.slot_owner_of("{survivor}")?;
    assert!(matches!(
        cluster.kill_primary(&orphan),
        Err(RedisClusterError::Topology(_))
    ));

    let ports = cluster.live_ports();
    drop(cluster);
    for port in ports {
        assert!(
            TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err(),
            "redis-server on {port} outlived the harness"
        );
    }
    Ok(())
}

#[test]
fn fewer_than_three_primaries_is_refused() {
    let spec = RedisClusterSpec {
        primaries: 2,
        replicas_per_primary: 0,
    };
    assert!(matches!(
        RedisCluster::start_with(spec),
        Err(RedisClusterError::Topology(_))
    ));
}

/// What the sharded adapter's design relies on (docs/sharded-adapter.md, section 1): while a
/// slot is only MIGRATING, its owner still takes `SPUBLISH` for the slot's channels and delivers
/// it to its subscribers, and the importing node redirects publishers back with `MOVED`.
#[test]
fn a_migrating_slot_keeps_its_shard_channels_on_the_source() -> Result<(), RedisClusterError> {
    let cluster = RedisCluster::start_with(RedisClusterSpec {
        primaries: 3,
        replicas_per_primary: 0,
    })?;
    let channel = "socket.io#/#moving-room#";
    let slot = key_slot(channel.as_bytes());
    let source = cluster.slot_owner(slot)?;
    let target = cluster
        .primaries()?
        .into_iter()
        .find(|p| p.id != source.id)
        .ok_or_else(|| RedisClusterError::Topology("one primary only".into()))?;
    let mut subscriber = cluster.connect(source.port)?;
    subscriber.command(&["SSUBSCRIBE", channel])?;

    let slot_arg = slot.to_string();
    let mut at_source = cluster.connect(source.port)?;
    let mut at_target = cluster.connect(target.port)?;
    at_target.command(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &source.id])?;
    at_source.command(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &target.id])?;

    assert_eq!(
        at_source.command(&["SPUBLISH", channel, "during"])?,
        Reply::Integer(1)
    );
    assert_eq!(
        subscriber.receive()?,
        Reply::Array(Some(vec![bulk("smessage"), bulk(channel), bulk("during")]))
    );
    match at_target.command(&["SPUBLISH", channel, "lost"]) {
        Err(RedisClusterError::Reply { message, .. }) => {
            assert!(message.starts_with("MOVED"), "{message}");
        }
        other => panic!("the importing node took a publish for a slot it does not own: {other:?}"),
    }

    // Finishing the move drops the subscriber, and the new owner takes publishes.
    assert_eq!(cluster.migrate_slot(slot, &target)?, 0);
    assert_eq!(subscriber.receive()?, push("sunsubscribe", channel, 0));
    assert_eq!(
        at_target.command(&["SPUBLISH", channel, "after"])?,
        Reply::Integer(0)
    );
    Ok(())
}

/// A hung primary (SIGSTOP: connections open, no answers) is failed over like a dead one, and
/// comes back as a replica of the node that replaced it.
#[test]
fn a_frozen_primary_is_replaced_and_rejoins_as_a_replica() -> Result<(), RedisClusterError> {
    let mut cluster = RedisCluster::start()?;
    let owner = cluster.slot_owner_of("{frozen}")?;
    let mut conn = cluster.connect(owner.port)?;
    conn.command(&["SET", "{frozen}k", "kept"])?;
    assert_eq!(conn.command(&["WAIT", "1", "5000"])?, Reply::Integer(1));

    let promoted = cluster.freeze_primary(&owner)?;
    assert_ne!(promoted.id, owner.id);
    assert_eq!(cluster.live_ports().len(), 5);
    assert!(
        cluster.pid(owner.port).is_some(),
        "a frozen node is not dead"
    );
    assert_eq!(
        cluster
            .connect(promoted.port)?
            .command(&["GET", "{frozen}k"])?,
        Reply::Bulk(Some(b"kept".to_vec()))
    );

    let back = cluster.thaw(owner.port)?;
    assert_eq!(
        back.role,
        Role::Replica {
            primary_id: promoted.id.clone()
        }
    );
    assert_eq!(cluster.live_ports().len(), 6);
    assert_eq!(cluster.slot_owner_of("{frozen}")?.id, promoted.id);
    Ok(())
}
