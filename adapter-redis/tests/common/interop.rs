//! Steps of the Node interop scenario shared by the classic wire (`node_interop.rs`) and the
//! sharded one (`sharded_node_interop.rs`): a Rust server ([`super::http_server`]) and a Node
//! peer whose clients are `cn` (on the Node server, in `r1`), `cr` (on the Rust server, in
//! `r1`) and `cr2` (on the Rust server, in `r2`). Each step checks one operation both ways.

use std::collections::HashMap;
use std::time::Duration;

use adapter_redis::RedisAdapterCtr;
use bytes::Bytes;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::node_peer::{NodePeer, WAIT};
use super::{Io, fetch_all, wait_room_size};

/// A server-side event seen by the Rust node: name, arguments, sending server.
pub type SeenEvent = (String, Vec<Json>, Option<String>);

/// Answers every server-side event of `/` with `"pong-rust-<event>"` when it asks for an ack,
/// and hands each one over on the returned channel.
pub fn answer_server_side_events(ctr: &RedisAdapterCtr) -> mpsc::Receiver<SeenEvent> {
    let mut sse = ctr.server_side_events("/").unwrap();
    let (seen_tx, seen) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(event) = sse.recv().await {
            let _ = seen_tx
                .send((event.event.clone(), event.args.clone(), event.from.clone()))
                .await;
            if let Some(ack) = event.ack {
                ack.send(json!(format!("pong-rust-{}", event.event)));
            }
        }
    });
    seen
}

/// Waits for server-side event `name` (skipping others); returns its arguments and sender.
pub async fn next_server_side_event(
    seen: &mut mpsc::Receiver<SeenEvent>,
    name: &str,
) -> (Vec<Json>, Option<String>) {
    loop {
        let (event, args, from) = tokio::time::timeout(WAIT, seen.recv())
            .await
            .unwrap()
            .unwrap();
        if event == name {
            return (args, from);
        }
    }
}

/// Rust -> Node: all, room, except, binary. `ordered`: all travel on one channel, so `cn`
/// gets them in the order sent; otherwise room broadcasts travel on their rooms' channels, in
/// no order against the others.
pub async fn broadcasts_from_rust(io: &Io, node: &mut NodePeer, ordered: bool) {
    io.emit("from-rust-all", &(1, "two")).await.unwrap();
    io.to("r1").emit("from-rust-room", &"x").await.unwrap();
    io.except("r1").emit("from-rust-except", &()).await.unwrap();
    io.emit("from-rust-bin", &Bytes::from_static(&[1, 2, 3]))
        .await
        .unwrap();
    io.emit("end", &()).await.unwrap();
    if ordered {
        assert_eq!(node.expect("cn", "from-rust-all").await, json!([1, "two"]));
        assert_eq!(node.expect("cn", "from-rust-room").await, json!(["x"]));
        assert_eq!(
            node.expect("cn", "from-rust-bin").await,
            json!([{"bin": [1, 2, 3]}])
        );
        node.expect("cn", "end").await;
    } else {
        let got = unordered(
            node,
            "cn",
            "from-rust",
            &["from-rust-all", "from-rust-room", "from-rust-bin", "end"],
        )
        .await;
        assert_eq!(got["from-rust-all"], json!([1, "two"]));
        assert_eq!(got["from-rust-room"], json!(["x"]));
        assert_eq!(got["from-rust-bin"], json!([{"bin": [1, 2, 3]}]));
    }
    node.expect("cr2", "from-rust-all").await;
    node.expect("cr2", "from-rust-except").await;
}

/// Node -> Rust: all, room, except, binary, as the Rust-held clients see them (events queued
/// for them before the first from Node are skipped); `ordered` as in
/// [`broadcasts_from_rust`].
pub async fn broadcasts_from_node(node: &mut NodePeer, ordered: bool) {
    node.cmd("emit_all", json!({})).await;
    node.cmd("emit_room", json!({})).await;
    node.cmd("emit_except", json!({})).await;
    node.cmd("emit_bin", json!({})).await;
    node.cmd("emit_end", json!({})).await;
    if ordered {
        for client in ["cr", "cr2"] {
            while node.next_for(client).await["name"] != json!("from-node-all") {}
        }
        assert_eq!(node.expect("cr", "from-node-room").await, json!(["x"]));
        node.expect("cr", "from-node-except").await;
        assert_eq!(
            node.expect("cr", "from-node-bin").await,
            json!([{"bin": [1, 2, 3]}])
        );
        node.expect("cr", "end").await;
        node.expect("cr2", "from-node-bin").await;
        node.expect("cr2", "end").await;
    } else {
        let all = [
            "from-node-all",
            "from-node-room",
            "from-node-except",
            "from-node-bin",
        ];
        let got = unordered(node, "cr", "from-node", &[&all[..], &["end"]].concat()).await;
        assert_eq!(got["from-node-room"], json!(["x"]));
        assert_eq!(got["from-node-bin"], json!([{"bin": [1, 2, 3]}]));
        let got = unordered(
            node,
            "cr2",
            "from-node",
            &["from-node-all", "from-node-bin", "end"],
        )
        .await;
        assert_eq!(got["from-node-bin"], json!([{"bin": [1, 2, 3]}]));
    }
}

/// Node's `io.in("r2").socketsJoin("fresh<n>")` then, with no wait,
/// `io.to("fresh<n>").emit("after-join", n)`: the ordering hazard of a join.
pub async fn node_joins_then_emits(node: &mut NodePeer, n: i32) {
    node.cmd(
        "join_then_emit",
        json!({"room": format!("fresh{n}"), "target": "r2", "n": n}),
    )
    .await;
}

/// Broadcasts `drain` from Rust and skips every client's events up to it.
pub async fn drain(io: &Io, node: &mut NodePeer) {
    io.emit("drain", &()).await.unwrap();
    for client in ["cn", "cr", "cr2"] {
        while node.next_for(client).await["name"] != json!("drain") {}
    }
}

/// The events of `client` from the first whose name starts with `first_prefix` (earlier ones,
/// the other server's own deliveries, are skipped) until each of `want` arrived once, in any
/// order; any other event fails. Their arguments, by name.
pub async fn unordered(
    node: &mut NodePeer,
    client: &str,
    first_prefix: &str,
    want: &[&str],
) -> HashMap<String, Json> {
    let mut msg = loop {
        let msg = node.next_for(client).await;
        if msg["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(first_prefix))
        {
            break msg;
        }
    };
    let mut got = HashMap::new();
    loop {
        let name = msg["name"].as_str().unwrap_or_default().to_owned();
        assert!(
            want.contains(&name.as_str()) && !got.contains_key(&name),
            "{client} got {msg}, having {got:?} of {want:?}"
        );
        got.insert(name, msg["args"].clone());
        if got.len() == want.len() {
            return got;
        }
        msg = node.next_for(client).await;
    }
}

/// fetchSockets both ways, of the sockets `[cn, cr, cr2]`; returns the ids of the Rust-held
/// ones (`cr`, `cr2`).
pub async fn fetch_sockets_both_ways(
    io: &Io,
    node: &mut NodePeer,
    [cn, cr, cr2]: [&String; 3],
) -> [String; 2] {
    let mut rust_view: Vec<String> = fetch_all(io)
        .await
        .iter()
        .map(|s| s.data().id.to_string())
        .collect();
    rust_view.sort();
    let local_ids = [cr.clone(), cr2.clone()];
    assert_eq!(rust_view.len(), 3, "{rust_view:?}");
    assert!(local_ids.iter().all(|id| rust_view.contains(id)));
    let mut all = vec![cn.clone(), cr.clone(), cr2.clone()];
    all.sort();
    assert_eq!(node.cmd("fetch", json!({})).await, json!(all));
    local_ids
}

/// A single socket both ways: the Node socket `cn` through its derived Sid, the Rust socket
/// `cr` through the peer's command `node_cmd` (`{"sid": ...}`).
pub async fn emit_to_one_socket_both_ways(io: &Io, node: &mut NodePeer, node_cmd: &str) {
    let local_ids = [node.sid("cr"), node.sid("cr2")];
    let remote_cn = fetch_all(io)
        .await
        .into_iter()
        .find(|s| !local_ids.contains(&s.data().id.to_string()))
        .unwrap();
    remote_cn.emit("direct-from-rust", &"hi").await.unwrap();
    assert_eq!(node.expect("cn", "direct-from-rust").await, json!(["hi"]));
    let cr = node.sid("cr");
    node.cmd(node_cmd, json!({ "sid": cr })).await;
    assert_eq!(node.expect("cr", "direct-from-node").await, json!(["hi"]));
}

/// Broadcast with acks both ways, the Rust one waiting `timeout` for its acks.
pub async fn broadcast_acks_both_ways(io: &Io, node: &mut NodePeer, timeout: Duration) {
    let acks = io
        .timeout(timeout)
        .emit_with_ack::<_, String>("rust-ask", &1)
        .await
        .unwrap();
    let mut acks: Vec<String> = futures_util::StreamExt::collect::<Vec<_>>(acks)
        .await
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect();
    acks.sort();
    assert_eq!(
        acks,
        ["ack-rust-ask-cn", "ack-rust-ask-cr", "ack-rust-ask-cr2"]
    );
    assert_eq!(
        node.cmd("emit_with_ack", json!({})).await,
        json!(["ack-node-ask-cn", "ack-node-ask-cr", "ack-node-ask-cr2"])
    );
}

/// serverSideEmitWithAck from Node, answered by Rust (see [`answer_server_side_events`]); then
/// from Rust, answered by Node.
pub async fn server_side_acks_both_ways(ctr: &RedisAdapterCtr, node: &mut NodePeer) {
    assert_eq!(
        node.cmd("sse_ack", json!({})).await,
        json!(["pong-rust-ping-srv"])
    );
    let answers = ctr
        .server_side_emit_with_ack("/", "ping-srv", vec![json!("hi")])
        .await
        .unwrap();
    assert_eq!(answers.value, vec![json!("pong-node")]);
    assert!(answers.missing.is_none());
}

/// socketsJoin / socketsLeave both ways: Node moves `cr2` (room `r2`) in and out of `r5`, Rust
/// puts `r1` (`cn` among them) in `r6`.
pub async fn join_and_leave_both_ways(io: &Io, node: &mut NodePeer) {
    node.cmd("join", json!({"room": "r2", "rooms": ["r5"]}))
        .await;
    wait_room_size(io, "r5", 1, "cr2 joined r5 on the Rust node").await;
    node.cmd("leave", json!({"room": "r2", "rooms": ["r5"]}))
        .await;
    wait_room_size(io, "r5", 0, "cr2 left r5").await;
    io.to("r1").join("r6").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.cmd("local_room_size", json!({"room": "r6"})).await != json!(1) {
        assert!(tokio::time::Instant::now() < deadline, "cn never joined r6");
    }
}

/// disconnectSockets both ways (Node drops `cr2`, Rust drops `cn`), then the adapter's
/// counters: nothing undecodable, timed out or dropped, traffic both ways.
pub async fn disconnect_both_ways(io: &Io, ctr: &RedisAdapterCtr, node: &mut NodePeer) {
    node.cmd("disconnect", json!({"room": "r2"})).await;
    while node.next_for("cr2").await["type"] != json!("disconnect") {}
    io.to(node.sid("cn")).disconnect().await.unwrap();
    while node.next_for("cn").await["type"] != json!("disconnect") {}
    let m = ctr.metrics();
    assert_eq!(m.decode_errors, 0, "{m:?}");
    assert_eq!(m.request_timeouts, 0, "{m:?}");
    assert!(m.published > 0 && m.received > 0 && m.dropped == 0, "{m:?}");
}
