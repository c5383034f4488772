//! Every frame the namespaces send goes through here, so it is counted and a full per-socket
//! queue is never a silent loss (docs/protocol.md, section "Namespaces and events").
//!
//! socketioxide drops a frame when a socket's queue (`max_buffer_size` packets) is full and
//! reports it as `SocketError::InternalChannelFull`: for a direct emit on that socket, and for a
//! broadcast only as a list of errors with no socket ids. So:
//! - direct emits and acks: the failing socket is known and is disconnected at once;
//! - broadcasts: the dropped frames are counted, then every local socket of the namespace is
//!   probed (an emit whose payload refuses to serialise: socketioxide reserves queue space
//!   before serialising, so the probe fails with `InternalChannelFull` on a full queue and sends
//!   nothing otherwise) and the full ones are disconnected.
//!
//! A slow socket is disconnected with a DISCONNECT packet; that packet itself needs queue space,
//! so it is retried until the queue has room, the socket is gone, or the ping timeout passed.
//!
//! The queue is also bounded in bytes (`SOCKET_QUEUE_BYTES`, see [`crate::outbound`]): every
//! frame is charged to the socket's session before it is queued, direct emits here and
//! broadcasts, from this node or another, in [`QueuePolicy`] (called by the adapter). A frame
//! that would take the session over its budget is not queued and the socket is disconnected as
//! a slow client.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SendError, SocketError};

use super::{Session, Shared};
use crate::Adapter;
use crate::outbound::SessionMeter;
use crate::protocol::rooms::SLOW_CLIENTS;

/// The local room of sockets being disconnected as slow clients (see [`SLOW_CLIENTS`]).
pub const SLOW_ROOM: &str = SLOW_CLIENTS;

/// Interval between attempts to queue the DISCONNECT packet of a slow client.
const DISCONNECT_RETRY: Duration = Duration::from_millis(50);

/// Emits `event` to one socket.
pub fn to_socket<T: Serialize + ?Sized>(
    shared: &Shared,
    socket: &SocketRef<Adapter>,
    event: &str,
    data: &T,
) {
    if is_slow(socket) || !fits_budget(shared, socket, event, data) {
        return;
    }
    let result = socket.emit(event, data);
    after_send(shared, socket, event, result);
}

/// Sends an ack (no-op when the client did not ask for one).
pub fn ack<T: Serialize + ?Sized>(
    shared: &Shared,
    socket: &SocketRef<Adapter>,
    sender: AckSender<Adapter>,
    data: &T,
) {
    if is_slow(socket) || !fits_budget(shared, socket, "ack", data) {
        return;
    }
    let result = sender.send(data);
    after_send(shared, socket, "ack", result);
}

fn is_slow(socket: &SocketRef<Adapter>) -> bool {
    Session::of(socket).is_some_and(|s| s.is_slow())
}

/// Bytes of a packet header beyond its data: type, ack id, namespace, separators.
const PACKET_OVERHEAD: usize = 32;

/// Counts serialised bytes without keeping them.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Charges a frame to the socket's session; `false` when that takes the session over its byte
/// budget, in which case the frame must not be queued and the socket is cut off.
fn fits_budget<T: Serialize + ?Sized>(
    shared: &Shared,
    socket: &SocketRef<Adapter>,
    event: &str,
    data: &T,
) -> bool {
    let Some(SessionMeter(meter)) = socket.extensions.get::<SessionMeter>() else {
        return true;
    };
    let mut count = ByteCount(0);
    // A payload that does not serialise is reported by the emit itself.
    let _ = serde_json::to_writer(&mut count, data);
    let bytes = (count.0 + event.len() + socket.ns().len() + PACKET_OVERHEAD) as u64;
    let queued = meter.charge(bytes);
    if queued <= shared.app.config.args.socket_queue_bytes {
        return true;
    }
    over_budget(shared, socket, queued);
    false
}

/// Cuts off a socket whose queue went over its byte budget, counting it.
fn over_budget(shared: &Shared, socket: &SocketRef<Adapter>, queued: u64) {
    shared.app.metrics.dropped_frames.inc();
    if slow_client(shared, socket) {
        shared.app.metrics.queue_budget_disconnects.inc();
        tracing::warn!(
            socket = %socket.id,
            ns = socket.ns(),
            queued,
            budget = shared.app.config.args.socket_queue_bytes,
            "outgoing queue over its byte budget: disconnecting slow client"
        );
    }
}

/// The byte budget and full-queue policy of broadcasts, applied by the adapter to every local
/// delivery: broadcasts from this node and from the others alike.
#[derive(Debug)]
pub struct QueuePolicy(Weak<Shared>);

impl QueuePolicy {
    /// The policy of `shared`'s node (held weakly: the adapter outlives nothing it points to).
    pub fn new(shared: &Arc<Shared>) -> Self {
        Self(Arc::downgrade(shared))
    }
}

impl adapter_redis::DeliveryObserver for QueuePolicy {
    fn before_delivery(&self, ns: &str, sids: &[Sid], bytes: usize) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let budget = shared.app.config.args.socket_queue_bytes;
        let over = shared.app.outbound.charge_all(sids, bytes as u64, budget);
        if over.is_empty() {
            return;
        }
        let Some(op) = shared.io.of(ns) else { return };
        for sid in over {
            if let Some(socket) = op.get_socket(sid) {
                let queued = socket
                    .extensions
                    .get::<SessionMeter>()
                    .map_or(0, |SessionMeter(m)| m.queued());
                over_budget(&shared, &socket, queued);
            }
        }
    }

    fn dropped(&self, ns: &str, dropped: usize) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        shared.app.metrics.dropped_frames.inc_by(dropped as u64);
        let found = disconnect_full_sockets(&shared, ns);
        if found > 0 {
            tracing::warn!(
                ns,
                dropped,
                found,
                "broadcast from another node met full outgoing queues: disconnecting slow clients"
            );
        } else {
            tracing::debug!(
                ns,
                dropped,
                "frames from another node dropped for clients already being disconnected"
            );
        }
    }

    fn excluded_room(&self) -> &str {
        SLOW_ROOM
    }
}

fn after_send(
    shared: &Shared,
    socket: &SocketRef<Adapter>,
    event: &str,
    result: Result<(), SendError>,
) {
    match result {
        Ok(()) => {
            shared.app.metrics.messages_sent.inc();
        }
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            shared.app.metrics.dropped_frames.inc();
            if slow_client(shared, socket) {
                tracing::warn!(socket = %socket.id, event, "outgoing queue full: disconnecting slow client");
            }
        }
        Err(SendError::Socket(SocketError::Closed)) => {
            tracing::debug!(socket = %socket.id, event, "emit to a closed socket");
        }
        Err(e) => tracing::error!(socket = %socket.id, event, error = %e, "cannot encode event"),
    }
}

/// Emits through a broadcast operator (rooms, namespace, any node).
pub async fn broadcast<T: Serialize + ?Sized>(
    shared: &Shared,
    operator: BroadcastOperators<Adapter>,
    event: &str,
    data: &T,
) -> Result<(), BroadcastError> {
    let ns = operator.ns_path().to_owned();
    match operator.except(SLOW_ROOM).emit(event, data).await {
        Ok(()) => {
            shared.app.metrics.messages_sent.inc();
            Ok(())
        }
        Err(BroadcastError::Socket(errors)) => {
            shared.app.metrics.messages_sent.inc();
            let full = errors
                .iter()
                .filter(|e| matches!(e, SocketError::InternalChannelFull))
                .count();
            if full > 0 {
                shared.app.metrics.dropped_frames.inc_by(full as u64);
                let found = disconnect_full_sockets(shared, &ns);
                if found > 0 {
                    tracing::warn!(
                        ns,
                        event,
                        found,
                        "outgoing queues full: disconnecting slow clients"
                    );
                } else {
                    tracing::debug!(
                        ns,
                        event,
                        full,
                        "frames dropped for clients already being disconnected"
                    );
                }
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(ns, event, error = %e, "broadcast failed");
            Err(e)
        }
    }
}

/// A payload that never serialises: the queue-space probe.
struct Probe;

impl Serialize for Probe {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("queue probe"))
    }
}

/// Whether the socket's outgoing queue is full right now (sends nothing).
pub fn queue_is_full(socket: &SocketRef<Adapter>) -> bool {
    matches!(
        socket.emit("probe", &Probe),
        Err(SendError::Socket(SocketError::InternalChannelFull))
    )
}

/// Probes every local socket of `ns` and disconnects those whose queue is full; returns how many
/// slow clients were newly found.
pub fn disconnect_full_sockets(shared: &Shared, ns: &str) -> usize {
    let Some(op) = shared.io.of(ns) else {
        return 0;
    };
    op.local()
        .sockets()
        .iter()
        .filter(|socket| queue_is_full(socket) && slow_client(shared, socket))
        .count()
}

/// Disconnects a slow client, counting it; `false` when it was already being disconnected.
pub fn slow_client(shared: &Shared, socket: &SocketRef<Adapter>) -> bool {
    let first = Session::of(socket).is_none_or(|s| s.mark_slow());
    if first {
        socket.join(SLOW_ROOM);
        shared.app.metrics.slow_client_disconnects.inc();
        disconnect(shared, socket);
    }
    first
}

/// Disconnects a socket from its namespace, retrying while its queue is full.
pub fn disconnect(shared: &Shared, socket: &SocketRef<Adapter>) {
    let socket = socket.clone();
    let give_up_after = shared.app.config.ping_timeout();
    match socket.clone().disconnect() {
        Err(SocketError::InternalChannelFull) => {}
        _ => return,
    }
    // Tracked: it ends by itself once the packet is queued or the ping timeout passed.
    shared.tasks.spawn(async move {
        let deadline = tokio::time::Instant::now() + give_up_after;
        loop {
            tokio::time::sleep(DISCONNECT_RETRY).await;
            if !socket.connected() {
                return;
            }
            match socket.clone().disconnect() {
                Err(SocketError::InternalChannelFull) if tokio::time::Instant::now() < deadline => {
                }
                Err(SocketError::InternalChannelFull) => {
                    tracing::warn!(socket = %socket.id, "slow client never drained its queue; left to the heartbeat");
                    return;
                }
                _ => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    //! A real node and two Engine.IO long-polling clients: one that stops polling (its queue
    //! fills, as with a client that cannot keep up) and one that floods a namespace broadcast.
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use clap::Parser;
    use serde_json::Value;
    use testkit::polling::Polling;

    use crate::auth::{Identity, TokenVerifier};
    use crate::config::{Cli, Config};

    /// One poll, pings answered and left out; empty when nothing arrives within a second.
    async fn poll(session: &Polling) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(1), session.poll_answering_pings())
            .await
            .map(|packets| packets.expect("the session ended"))
            .unwrap_or_default()
    }

    async fn metric(base: &str, name: &str) -> u64 {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_whose_queue_fills_is_disconnected_after_a_gap_free_prefix() {
        let cli = Cli::try_parse_from([
            "gateway",
            "--dev",
            "--event-rate-limit",
            "1000000",
            "--event-rate-burst",
            "1000000",
            "--drain-secs",
            "0",
        ])
        .unwrap();
        let config = Config::from_args(cli.serve).unwrap();
        let verifier = TokenVerifier::new(&config.jwt_key, config.jwt_algorithm).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node = tokio::spawn(crate::run(listener, config, async move {
            let _ = stopped.await;
        }));

        // Both on `/`, as users of their own.
        let http = reqwest::Client::new();
        let mut sessions = Vec::new();
        for user in ["slow", "fast"] {
            let token = verifier.mint(&Identity::user(user), 600).unwrap();
            let auth = serde_json::json!({ "token": token });
            sessions.push(Polling::connect(&http, &base, &auth).await);
        }
        let (slow, fast) = (&sessions[0], &sessions[1]);
        // Far more than the per-socket queue holds (`max_buffer_size`: 128 by default; this
        // still overflows it if the node is built with a few thousand).
        const TOTAL: usize = 5000;
        let flood: Vec<String> = (0..TOTAL)
            .map(|i| format!(r#"42["chat message",{{"content":"m{i}"}}]"#))
            .collect();
        fast.post(&flood).await;

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while metric(&base, "socketio_slow_client_disconnects_total").await < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slow client was never detected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(metric(&base, "socketio_dropped_frames_total").await >= 1);

        let mut packets = Vec::new();
        while !packets.iter().any(|p: &String| p.starts_with("41")) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no DISCONNECT packet; got {packets:?}"
            );
            packets.extend(poll(slow).await);
        }
        let numbers: Vec<usize> = packets
            .iter()
            .filter_map(|p| p.strip_prefix(r#"42["chat message","#))
            .map(|rest| {
                let msg: Value = serde_json::from_str(rest.trim_end_matches(']')).unwrap();
                msg["content"].as_str().unwrap()[1..].parse().unwrap()
            })
            .collect();
        assert!(!numbers.is_empty() && numbers.len() < TOTAL, "{numbers:?}");
        assert_eq!(
            numbers,
            (0..numbers.len()).collect::<Vec<_>>(),
            "frames after a dropped one reached the slow client"
        );
        let disconnect_at = packets.iter().position(|p| p.starts_with("41")).unwrap();
        assert!(
            packets[disconnect_at + 1..]
                .iter()
                .all(|p| !p.starts_with("42")),
            "events after the DISCONNECT: {:?}",
            &packets[disconnect_at..]
        );
        assert_eq!(
            metric(&base, "socketio_slow_client_disconnects_total").await,
            1
        );

        stop.send(()).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(40), node).await;
    }
}
