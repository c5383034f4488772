//! The sharded pub/sub transport on a real three-primary Redis Cluster: messages cross between
//! two transports, a subscription is live when `subscribe` returns, and a subscribed channel
//! keeps receiving after its slot moves to another primary and after its primary dies and a
//! replica takes over, without restarting anything (`docs/sharded-adapter.md`, section 4.3).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use adapter_redis::RedisAdapterConfig;
use adapter_redis::transport::{PubSubKind, Transport};
use bytes::Bytes;
use testkit::redis_cluster::{RedisCluster, key_slot};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

fn config() -> RedisAdapterConfig {
    RedisAdapterConfig {
        request_timeout: Duration::from_secs(2),
        shard_check_interval: Duration::from_millis(100),
        ..RedisAdapterConfig::default()
    }
}

async fn sharded(url: &str) -> Transport {
    Transport::connect(url, &config(), PubSubKind::Sharded)
        .await
        .unwrap()
}

/// Every message `transport` receives, as (channel, text), in arrival order.
fn inbox(transport: &Transport) -> mpsc::UnboundedReceiver<(String, String)> {
    let mut messages = transport.messages();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(msg) = messages.recv().await {
            let text = msg.value.as_string().unwrap_or_default();
            if tx.send((msg.channel.to_string(), text)).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next message, failing the test after `within`.
async fn next(
    rx: &mut mpsc::UnboundedReceiver<(String, String)>,
    within: Duration,
) -> (String, String) {
    timeout(within, rx.recv())
        .await
        .expect("no message in time")
        .expect("inbox closed")
}

/// Channel names whose slots are owned by three different primaries.
fn channels_on_every_primary(cluster: &RedisCluster) -> Vec<String> {
    let mut owners = BTreeSet::new();
    let mut channels = Vec::new();
    for i in 0.. {
        let channel = format!("socket.io#/#room:{i}#");
        let owner = cluster.slot_owner_of(&channel).unwrap();
        if owners.insert(owner.id) {
            channels.push(channel);
        }
        if owners.len() == 3 {
            break;
        }
    }
    channels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_between_two_transports_and_subscribers_are_counted_on_every_primary() {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let a = sharded(&url).await;
    let b = sharded(&url).await;
    let mut b_inbox = inbox(&b);
    let mut channels = channels_on_every_primary(&cluster);
    channels.push("socket.io#/#".to_owned());
    b.subscribe(channels.clone()).await.unwrap();
    for channel in &channels {
        assert_eq!(cluster.shard_subscribers(channel).unwrap(), 1, "{channel}");
    }

    for (i, channel) in channels.iter().enumerate() {
        a.publish(channel.clone(), Bytes::from(format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(
            next(&mut b_inbox, Duration::from_secs(5)).await,
            (channel.clone(), format!("m{i}"))
        );
    }
    // Binary payloads cross untouched.
    let mut raw = b.messages();
    for payload in [&[0x83, 0, 0xff][..], &[0x92, 1, 2][..]] {
        a.publish(channels[0].clone(), Bytes::copy_from_slice(payload))
            .await
            .unwrap();
        let msg = timeout(Duration::from_secs(5), raw.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.value.as_bytes(), Some(payload));
    }

    assert_eq!(b.subscriber_count("socket.io#/#").await.unwrap(), 1);
    a.subscribe(vec!["socket.io#/#".to_owned()]).await.unwrap();
    // The sum is cached for a fraction of a second; it follows once that passed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.subscriber_count("socket.io#/#").await.unwrap() != 2 {
        assert!(Instant::now() < deadline, "SHARDNUMSUB sum never reached 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Unsubscribed channels stop arriving; the others keep going.
    b.unsubscribe(vec![channels[0].clone()]).await.unwrap();
    assert_eq!(cluster.shard_subscribers(&channels[0]).unwrap(), 0);
    a.publish(channels[0].clone(), Bytes::from_static(b"gone"))
        .await
        .unwrap();
    a.publish(channels[1].clone(), Bytes::from_static(b"still"))
        .await
        .unwrap();
    // Drain what the binary publishes left, then the next text must be "still".
    loop {
        let (channel, text) = next(&mut b_inbox, Duration::from_secs(5)).await;
        assert_ne!(text, "gone");
        if text == "still" {
            assert_eq!(channel, channels[1]);
            break;
        }
    }
    assert_eq!(b.metrics().subscriptions, channels.len() as u64 - 1);
    a.quit().await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_when_subscribe_returns_arrives() {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let publisher = sharded(&url).await;
    let subscriber = sharded(&url).await;
    let mut received = inbox(&subscriber);
    const ROUNDS: usize = 300;
    for i in 0..ROUNDS {
        // A connect's two channels (its own and its user room: different slots) at once.
        let own = format!("socket.io#/#sid{i}#");
        let user = format!("socket.io#/#user:{i}#");
        subscriber
            .subscribe(vec![own.clone(), user.clone()])
            .await
            .unwrap();
        publisher
            .publish(own.clone(), Bytes::from(format!("own{i}")))
            .await
            .unwrap();
        publisher
            .publish(user.clone(), Bytes::from(format!("user{i}")))
            .await
            .unwrap();
        let mut got = vec![
            next(&mut received, Duration::from_secs(5)).await,
            next(&mut received, Duration::from_secs(5)).await,
        ];
        got.sort();
        assert_eq!(
            got,
            vec![
                (own.clone(), format!("own{i}")),
                (user.clone(), format!("user{i}"))
            ],
            "round {i}"
        );
        if i % 2 == 0 {
            subscriber.unsubscribe(vec![own, user]).await.unwrap();
        }
    }
    assert_eq!(subscriber.metrics().subscribe_failures, 0);
    publisher.quit().await;
    subscriber.quit().await;
}

/// Publishes `seq` numbers on `channel` every 2 ms until told to stop; returns how many it
/// sent and how many publishes failed.
fn spawn_publisher(
    transport: Arc<Transport>,
    channel: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        // No catching up in bursts: at most one message per 2 ms, which the loss bound uses.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut seq, mut failures) = (0u64, 0u64);
        while !*stop.borrow() {
            tick.tick().await;
            match transport
                .publish(channel.clone(), Bytes::from(seq.to_string()))
                .await
            {
                Ok(()) => seq += 1,
                Err(_) => failures += 1,
            }
        }
        (seq, failures)
    })
}

/// Adds to `got` the sequence numbers arriving until the last one sent (`until - 1`) is in.
async fn receive_numbers_until(
    rx: &mut mpsc::UnboundedReceiver<(String, String)>,
    got: &mut BTreeSet<u64>,
    until: u64,
) {
    while got.last().is_none_or(|&last| last + 1 < until) {
        let (_, text) = next(rx, Duration::from_secs(10)).await;
        if let Ok(n) = text.parse::<u64>() {
            got.insert(n);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_channel_keeps_receiving_after_its_slot_moves() {
    let cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let publisher = Arc::new(sharded(&url).await);
    let subscriber = sharded(&url).await;
    let channel = "socket.io#/#room:busy#".to_owned();
    subscriber.subscribe(vec![channel.clone()]).await.unwrap();
    let mut rx = inbox(&subscriber);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let sender = spawn_publisher(publisher.clone(), channel.clone(), stop);
    // Traffic flows before the move.
    let mut got = BTreeSet::new();
    got.insert(
        next(&mut rx, Duration::from_secs(5))
            .await
            .1
            .parse::<u64>()
            .unwrap(),
    );

    let slot = key_slot(channel.as_bytes());
    let from = cluster.slot_owner(slot).unwrap();
    let to = cluster
        .primaries()
        .unwrap()
        .into_iter()
        .find(|p| p.id != from.id)
        .unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.migrate_slot(slot, &to).unwrap();
        cluster
    })
    .await
    .unwrap();

    // The transport notices and subscribes again at the new owner. A repair may also have run
    // while the slot was still moving (and subscribed at the old owner, which then dropped it),
    // so the condition is Redis's own count once the move is over, not the repair counter.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.shard_subscribers(&channel).unwrap() != 1 {
        assert!(
            Instant::now() < deadline,
            "not subscribed again after the slot moved (repairs: {})",
            subscriber.metrics().sharded_repairs
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(subscriber.metrics().sharded_repairs >= 1);
    let owner = cluster.slot_owner(slot).unwrap();
    assert_ne!(owner.id, from.id);
    // Everything published from now on arrives.
    let mut probe = inbox(&subscriber);
    let mark = format!("after-repair-{}", subscriber.metrics().sharded_repairs);
    publisher
        .publish(channel.clone(), Bytes::from(mark.clone()))
        .await
        .unwrap();
    loop {
        let (_, text) = next(&mut probe, Duration::from_secs(5)).await;
        if text == mark {
            break;
        }
    }
    stop_tx.send(true).unwrap();
    let (sent, failures) = sender.await.unwrap();
    receive_numbers_until(&mut rx, &mut got, sent).await;
    let lost = sent - got.len() as u64;
    let metrics = subscriber.metrics();
    eprintln!(
        "slot move: {sent} sent, {lost} lost, {failures} publishes failed, repairs {}, \
         resubscribed {}, longest gap {} ms",
        metrics.sharded_repairs, metrics.sharded_resubscribes, metrics.sharded_repair_gap_ms_max
    );
    assert!(metrics.sharded_resubscribes >= 1);
    assert!(metrics.sharded_repair_gap_ms_max > 0);
    // What was lost was lost within the measured gap: at one message every 2 ms at most.
    assert!(
        lost <= metrics.sharded_repair_gap_ms_sum / 2 + 2,
        "{lost} lost in a {} ms gap",
        metrics.sharded_repair_gap_ms_sum
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_channel_keeps_receiving_after_its_primary_crashes() {
    delivery_resumes_after_a_failover(Failure::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_channel_keeps_receiving_after_its_primary_hangs() {
    delivery_resumes_after_a_failover(Failure::Hang).await;
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    /// SIGKILL: connections to it are refused.
    Crash,
    /// SIGSTOP: connections to it stay open and go silent.
    Hang,
}

async fn delivery_resumes_after_a_failover(failure: Failure) {
    let mut cluster = RedisCluster::start().unwrap();
    let url = cluster.url();
    let publisher = Arc::new(sharded(&url).await);
    let subscriber = sharded(&url).await;
    let channel = "socket.io#/#room:failover#".to_owned();
    let elsewhere = channels_on_every_primary(&cluster)
        .into_iter()
        .find(|c| {
            cluster.slot_owner_of(c).unwrap().id != cluster.slot_owner_of(&channel).unwrap().id
        })
        .unwrap();
    subscriber
        .subscribe(vec![channel.clone(), elsewhere.clone()])
        .await
        .unwrap();
    let mut rx = inbox(&subscriber);
    publisher
        .publish(channel.clone(), Bytes::from_static(b"before"))
        .await
        .unwrap();
    assert_eq!(next(&mut rx, Duration::from_secs(5)).await.1, "before");

    let owner = cluster.slot_owner_of(&channel).unwrap();
    let (cluster, promoted) = tokio::task::spawn_blocking(move || {
        let promoted = match failure {
            Failure::Crash => cluster.kill_primary(&owner).unwrap(),
            Failure::Hang => cluster.freeze_primary(&owner).unwrap(),
        };
        (cluster, promoted)
    })
    .await
    .unwrap();
    assert!(promoted.owns(key_slot(channel.as_bytes())));

    // Delivery resumes at the promoted replica, nothing restarted: probe until one arrives.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = 0u64;
    'resumed: loop {
        assert!(
            Instant::now() < deadline,
            "delivery never resumed after the failover"
        );
        probe += 1;
        let mark = format!("probe{probe}");
        let published = publisher
            .publish(channel.clone(), Bytes::from(mark.clone()))
            .await;
        if published.is_ok() {
            let wait = Instant::now() + Duration::from_millis(300);
            while let Ok(Some((_, text))) =
                timeout(wait.saturating_duration_since(Instant::now()), rx.recv()).await
            {
                if text == mark {
                    break 'resumed;
                }
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // And it keeps working: every message from now on, on both channels, arrives.
    for i in 0..50 {
        for c in [&channel, &elsewhere] {
            publisher
                .publish(c.clone(), Bytes::from(format!("after{i}")))
                .await
                .unwrap();
            let (got_channel, text) = loop {
                let (ch, text) = next(&mut rx, Duration::from_secs(5)).await;
                if !text.starts_with("probe") {
                    break (ch, text);
                }
            };
            assert_eq!((&got_channel, text), (c, format!("after{i}")));
        }
    }
    assert_eq!(cluster.shard_subscribers(&channel).unwrap(), 1);
    let metrics = subscriber.metrics();
    eprintln!(
        "{failure:?}: {probe} probes, repairs {}, resubscribed {}, longest gap {} ms",
        metrics.sharded_repairs, metrics.sharded_resubscribes, metrics.sharded_repair_gap_ms_max
    );
    assert!(metrics.sharded_repairs >= 1);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_single_redis_subscriptions_come_back_after_the_connection_is_killed() {
    let redis = testkit::RedisServer::start().unwrap();
    let url = redis.url();
    let publisher = sharded(&url).await;
    let subscriber = sharded(&url).await;
    let mut rx = inbox(&subscriber);
    let channels = vec!["socket.io#/#".to_owned(), "socket.io#/#room:1#".to_owned()];
    subscriber.subscribe(channels.clone()).await.unwrap();
    assert_eq!(publisher.subscriber_count(&channels[0]).await.unwrap(), 1);
    for c in &channels {
        publisher
            .publish(c.clone(), Bytes::from_static(b"one"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut rx, Duration::from_secs(5)).await,
            (c.clone(), "one".to_owned())
        );
    }

    // Redis drops the subscriber's connection: fred reconnects, the transport subscribes again.
    let admin = fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&url).unwrap())
        .build()
        .unwrap();
    fred::interfaces::ClientLike::init(&admin).await.unwrap();
    let killed: i64 = fred::interfaces::ClientLike::custom(
        &admin,
        fred::types::CustomCommand::new_static("CLIENT", 0u16, false),
        vec!["KILL", "TYPE", "pubsub"],
    )
    .await
    .unwrap();
    assert!(killed >= 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscriber.metrics().sharded_resubscribes < channels.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "not subscribed again after the connection was killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The count above can be reached while a reply of fred's own resubscription on the new
    // connection is still being matched; what matters is that Redis has every channel's
    // subscriber back (asked without any cache), and then that nothing published is missed.
    loop {
        let mut args = vec!["SHARDNUMSUB".to_owned()];
        args.extend(channels.iter().cloned());
        let counts: Vec<fred::types::Value> = fred::interfaces::ClientLike::custom(
            &admin,
            fred::types::CustomCommand::new_static("PUBSUB", 0u16, false),
            args,
        )
        .await
        .unwrap();
        let subscribed = counts
            .chunks(2)
            .filter(|pair| pair.get(1).and_then(fred::types::Value::as_i64) == Some(1))
            .count();
        if subscribed == channels.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis counts {subscribed} of {} channels subscribed again",
            channels.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in &channels {
        publisher
            .publish(c.clone(), Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut rx, Duration::from_secs(5)).await,
            (c.clone(), "two".to_owned())
        );
    }
    assert_eq!(publisher.subscriber_count(&channels[1]).await.unwrap(), 1);
    let _ = fred::interfaces::ClientLike::quit(&admin).await;
    publisher.quit().await;
    subscriber.quit().await;
}
