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

use std::time::Duration;

use clap::Parser;
use gateway::auth::{Identity, TokenVerifier};
use gateway::config::{Cli, Config, DEV_SECRET, JwtAlgorithm, JwtKey};
use serde_json::Value;
use testkit::polling::Polling;

/// A long-polling session of `user` on `/`, speaking the raw protocol, so that the test decides
/// which packets travel together in one request.
async fn connected(base: &str, user: &str) -> Polling {
    let verifier = TokenVerifier::new(
        &JwtKey::Secret(DEV_SECRET.as_bytes().to_vec()),
        JwtAlgorithm::Hs256,
    );
    let token = verifier.unwrap().mint(&Identity::user(user), 600).unwrap();
    Polling::connect(
        &reqwest::Client::new(),
        base,
        &serde_json::json!({ "token": token }),
    )
    .await
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

    let mut stays = connected(&base, "stays").await;
    let mut goes = connected(&base, "goes").await;
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
