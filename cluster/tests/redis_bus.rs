//! The control bus on `cluster:message` between two nodes on a real redis-server.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cluster::bus::{
    ControlEvent, ControlHandler, ControlSubscription, ReceivedControl, ServerShutdown,
    SystemAnnouncement, UserBanned,
};
use common::*;
use fred::prelude::*;
use tokio::sync::mpsc;

async fn recv(sub: &mut ControlSubscription, what: &str) -> ReceivedControl {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap_or_else(|_| panic!("{what} not received within 5 s"))
        .unwrap()
}

fn announcement(text: &str) -> SystemAnnouncement {
    SystemAnnouncement {
        message: text.into(),
        extra: serde_json::Map::new(),
    }
}

#[tokio::test]
async fn events_travel_between_nodes_and_own_messages_are_ignored() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let mut sub_a = a.bus().subscribe();
    let mut sub_b = b.bus().subscribe();

    let delivered = a
        .bus()
        .publish_announcement(announcement("hello"))
        .await
        .unwrap();
    assert_eq!(delivered, 2, "both nodes' subscriber connections got it");
    let got = recv(&mut sub_b, "announcement").await;
    assert_eq!(got.server_id, "a");
    assert_eq!(
        got.event,
        ControlEvent::SystemAnnouncement(announcement("hello"))
    );
    assert!(got.timestamp.is_some());

    let ban = UserBanned {
        user_id: "u1".into(),
        reason: "spam".into(),
        banned_by: Some("admin".into()),
        expires_at: None,
    };
    b.bus().publish_user_banned(ban.clone()).await.unwrap();
    let got = recv(&mut sub_a, "ban").await;
    assert_eq!(got.server_id, "b");
    assert_eq!(got.event, ControlEvent::UserBanned(ban));
    b.bus()
        .publish_server_shutdown(ServerShutdown {
            message: Some("bye".into()),
            extra: serde_json::Map::new(),
        })
        .await
        .unwrap();
    assert!(matches!(
        recv(&mut sub_a, "shutdown").await.event,
        ControlEvent::ServerShutdown(ServerShutdown { message: Some(ref m), .. }) if m == "bye"
    ));

    // a never saw its own announcement; b never saw its own ban or shutdown.
    wait_for("own messages to be counted", Duration::from_secs(5), || {
        let (ca, cb) = (a.bus().counters(), b.bus().counters());
        async move { (ca.ignored_own == 1 && cb.ignored_own == 2).then_some(()) }
    })
    .await;
    assert!(sub_a.try_recv().is_none(), "a got more than b's two events");
    assert!(sub_b.try_recv().is_none(), "b got its own messages");
    let ca = a.bus().counters();
    assert_eq!((ca.published, ca.received), (1, 2));
}

#[tokio::test]
async fn unknown_and_malformed_messages_are_counted_and_not_fatal() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let mut sub = a.bus().subscribe();
    let raw = raw_client(&server.url()).await;
    let _: i64 = raw
        .publish(
            "cluster:message",
            r#"{"serverId":"node-js","event":"cache_flush","data":{},"timestamp":"2026-01-01T00:00:00Z"}"#,
        )
        .await
        .unwrap();
    let _: i64 = raw.publish("cluster:message", "not json").await.unwrap();
    // A Node.js node of the original design, with an epoch-millisecond timestamp.
    let _: i64 = raw
        .publish(
            "cluster:message",
            r#"{"serverId":"node-js","event":"system_announcement","data":{"message":"still here"},"timestamp":1764100000000}"#,
        )
        .await
        .unwrap();
    let got = recv(&mut sub, "the announcement after the bad ones").await;
    assert_eq!(got.server_id, "node-js");
    assert_eq!(
        got.event,
        ControlEvent::SystemAnnouncement(announcement("still here"))
    );
    let c = a.bus().counters();
    assert_eq!((c.unknown_events, c.malformed, c.received), (1, 1, 1));
}

struct Recorder(mpsc::Sender<String>);

#[async_trait::async_trait]
impl ControlHandler for Recorder {
    async fn user_banned(&self, from: &str, ban: UserBanned) {
        let _ = self.0.send(format!("{from} banned {}", ban.user_id)).await;
    }
    async fn system_announcement(&self, from: &str, a: SystemAnnouncement) {
        let _ = self.0.send(format!("{from} announced {}", a.message)).await;
    }
}

#[tokio::test]
async fn typed_handler_gets_each_event() {
    let server = redis();
    let a = node(&server.url(), "a").await;
    let b = node(&server.url(), "b").await;
    let (tx, mut rx) = mpsc::channel(8);
    let _handler = b.bus().spawn_handler(Arc::new(Recorder(tx)));
    a.bus()
        .publish_announcement(announcement("one"))
        .await
        .unwrap();
    a.bus()
        .publish_server_shutdown(ServerShutdown::default())
        .await
        .unwrap();
    a.bus()
        .publish_user_banned(UserBanned {
            user_id: "u9".into(),
            reason: String::new(),
            banned_by: None,
            expires_at: None,
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(got, ["a announced one", "a banned u9"]);
}
