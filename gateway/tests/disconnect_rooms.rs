//! A socket that leaves with a DISCONNECT packet and closes its transport in the same breath
//! (what `socket.io-client`'s `socket.disconnect()` does) still leaves every room it was in.
//!
//! socketioxide runs the disconnect handler in a task it spawns on the DISCONNECT packet;
//! engineioxide handles the transport's close, read right after it, in a second task, which takes
//! the socket out of its rooms without waiting for the first. Tokio runs the task spawned last
//! first (its LIFO slot), so a handler that asked the socket for its rooms only once it ran found
//! none, and the other members never got `user left` while the registry kept the member (seen
//! about once in a few runs of the end-to-end suite under load). One worker thread makes that
//! order certain here; the handler now reads the rooms before its task is spawned.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::Duration;

use clap::Parser;
use gateway::auth::{Identity, TokenVerifier};
use gateway::config::{Cli, Config, DEV_SECRET, JwtAlgorithm, JwtKey};
use serde_json::Value;
use tokio::time::Instant;

/// Engine.IO's packet separator in a long-polling body.
const SEP: char = '\u{1e}';

/// A long-polling Socket.IO client speaking the raw protocol, so that the test decides which
/// packets travel together in one request.
struct Poller {
    http: reqwest::Client,
    url: String,
    next_ack: u32,
    /// Packets received and not yet asked for, in order (one poll may bring several).
    unread: VecDeque<String>,
}

impl Poller {
    async fn open(base: &str, user: &str) -> Self {
        let http = reqwest::Client::new();
        let body = http
            .get(format!("{base}/socket.io/?EIO=4&transport=polling"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
        let sid = open["sid"].as_str().unwrap();
        let mut poller = Self {
            http,
            url: format!("{base}/socket.io/?EIO=4&transport=polling&sid={sid}"),
            next_ack: 0,
            unread: VecDeque::new(),
        };
        let token = TokenVerifier::new(
            &JwtKey::Secret(DEV_SECRET.as_bytes().to_vec()),
            JwtAlgorithm::Hs256,
        )
        .unwrap()
        .mint(
            &Identity {
                user_id: user.into(),
                username: user.into(),
                role: "user".into(),
            },
            600,
        )
        .unwrap();
        poller
            .post(&[format!("40{}", serde_json::json!({ "token": token }))])
            .await;
        poller.until(|p| p.starts_with("40{"), "CONNECT ack").await;
        poller
    }

    async fn post(&self, packets: &[String]) {
        let body = packets.join(&SEP.to_string());
        let res = self.http.post(&self.url).body(body).send().await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }

    /// Returns the first packet, read or still to come, that matches `wanted`; the packets
    /// before it are dropped and pings are answered on the way.
    async fn until(&mut self, wanted: impl Fn(&str) -> bool, what: &str) -> String {
        // A guard against a hang only: every wait here ends within milliseconds when it passes.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut skipped = Vec::new();
        loop {
            while let Some(packet) = self.unread.pop_front() {
                if wanted(&packet) {
                    return packet;
                }
                skipped.push(packet);
            }
            assert!(Instant::now() < deadline, "no {what}; got {skipped:?}");
            let body = self
                .http
                .get(&self.url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            for packet in body.split(SEP) {
                if packet == "2" {
                    self.post(&["3".to_owned()]).await;
                } else {
                    self.unread.push_back(packet.to_owned());
                }
            }
        }
    }

    /// Emits `event` with an ack and returns the ack's first argument.
    async fn call(&mut self, event: &str, data: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        self.post(&[format!("42{id}{}", serde_json::json!([event, data]))])
            .await;
        let prefix = format!("43{id}");
        let ack = self
            .until(|p| p.starts_with(&prefix), &format!("ack of {event}"))
            .await;
        let args: Value = serde_json::from_str(&ack[prefix.len()..]).unwrap();
        args[0].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_disconnect_packet_and_transport_close_together_still_leave_every_room() {
    let cli = Cli::try_parse_from(["gateway", "--dev", "--drain-secs", "0"]).unwrap();
    let config = Config::from_args(cli.serve).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(gateway::run(listener, config, async move {
        let _ = stopped.await;
    }));

    let mut stays = Poller::open(&base, "stays").await;
    let mut goes = Poller::open(&base, "goes").await;
    for room in ["first", "second"] {
        let created = stays
            .call(
                "create room",
                serde_json::json!({ "roomId": room, "roomName": room }),
            )
            .await;
        assert_eq!(created["success"], true, "{created}");
        for member in [&mut stays, &mut goes] {
            let joined = member
                .call("join room", serde_json::json!({ "roomId": room }))
                .await;
            assert_eq!(joined["success"], true, "{joined}");
        }
    }

    // DISCONNECT for `/`, then Engine.IO's close, in one request.
    goes.post(&["41".to_owned(), "1".to_owned()]).await;

    let mut left_rooms = Vec::new();
    for _ in 0..2 {
        let packet = stays
            .until(|p| p.starts_with(r#"42["user left""#), "user left")
            .await;
        let args: Value = serde_json::from_str(&packet[2..]).unwrap();
        assert_eq!(args[1]["userId"], "goes", "{packet}");
        assert_eq!(args[1]["userCount"], 1, "{packet}");
        left_rooms.push(args[1]["roomId"].as_str().unwrap().to_owned());
    }
    left_rooms.sort();
    assert_eq!(left_rooms, ["first", "second"]);

    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(40), node).await;
}
