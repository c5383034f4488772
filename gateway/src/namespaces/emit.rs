//! Every frame the namespaces send goes through here, so it is counted and a full per-socket
//! queue is never a silent loss (PROTOCOL.md section 1, measured pitfall 3).
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

use std::time::Duration;

use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::operators::BroadcastOperators;
use socketioxide::{BroadcastError, SendError, SocketError};

use super::{Session, Shared};
use crate::app::App;
use crate::{Adapter, Io};

/// Where emits are counted and slow clients handled: the namespaces' [`Shared`], or a plain
/// `(&App, &Io)` pair for callers outside them (admin actions).
pub trait Sink {
    /// Node state (metrics, configuration).
    fn app(&self) -> &App;
    /// The Socket.IO server.
    fn io(&self) -> &Io;
}

impl Sink for Shared {
    fn app(&self) -> &App {
        &self.app
    }
    fn io(&self) -> &Io {
        &self.io
    }
}

impl<T: Sink> Sink for std::sync::Arc<T> {
    fn app(&self) -> &App {
        (**self).app()
    }
    fn io(&self) -> &Io {
        (**self).io()
    }
}

impl Sink for (&App, &Io) {
    fn app(&self) -> &App {
        self.0
    }
    fn io(&self) -> &Io {
        self.1
    }
}

/// The local room of sockets being disconnected as slow clients: every broadcast excludes it, so
/// once a frame to a socket is dropped, nothing after it reaches that socket (no silent gap).
pub const SLOW_ROOM: &str = "gateway:slow-clients";

/// Interval between attempts to queue the DISCONNECT packet of a slow client.
const DISCONNECT_RETRY: Duration = Duration::from_millis(50);

/// Emits `event` to one socket.
pub fn to_socket<T: Serialize + ?Sized>(
    shared: &impl Sink,
    socket: &SocketRef<Adapter>,
    event: &str,
    data: &T,
) {
    if is_slow(socket) {
        return;
    }
    let result = socket.emit(event, data);
    after_send(shared, socket, event, result);
}

/// Sends an ack (no-op when the client did not ask for one).
pub fn ack<T: Serialize + ?Sized>(
    shared: &impl Sink,
    socket: &SocketRef<Adapter>,
    sender: AckSender<Adapter>,
    data: &T,
) {
    if is_slow(socket) {
        return;
    }
    let result = sender.send(data);
    after_send(shared, socket, "ack", result);
}

fn is_slow(socket: &SocketRef<Adapter>) -> bool {
    Session::of(socket).is_some_and(|s| s.is_slow())
}

fn after_send(
    shared: &impl Sink,
    socket: &SocketRef<Adapter>,
    event: &str,
    result: Result<(), SendError>,
) {
    match result {
        Ok(()) => {
            shared.app().metrics.messages_sent.inc();
        }
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            shared.app().metrics.dropped_frames.inc();
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
    shared: &impl Sink,
    operator: BroadcastOperators<Adapter>,
    event: &str,
    data: &T,
) -> Result<(), BroadcastError> {
    let ns = operator.ns_path().to_owned();
    match operator.except(SLOW_ROOM).emit(event, data).await {
        Ok(()) => {
            shared.app().metrics.messages_sent.inc();
            Ok(())
        }
        Err(BroadcastError::Socket(errors)) => {
            shared.app().metrics.messages_sent.inc();
            let full = errors
                .iter()
                .filter(|e| matches!(e, SocketError::InternalChannelFull))
                .count();
            if full > 0 {
                shared.app().metrics.dropped_frames.inc_by(full as u64);
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
pub fn disconnect_full_sockets(shared: &impl Sink, ns: &str) -> usize {
    let Some(op) = shared.io().of(ns) else {
        return 0;
    };
    op.local()
        .sockets()
        .iter()
        .filter(|socket| queue_is_full(socket) && slow_client(shared, socket))
        .count()
}

/// Disconnects a slow client, counting it; `false` when it was already being disconnected.
pub fn slow_client(shared: &impl Sink, socket: &SocketRef<Adapter>) -> bool {
    let first = Session::of(socket).is_none_or(|s| s.mark_slow());
    if first {
        socket.join(SLOW_ROOM);
        shared.app().metrics.slow_client_disconnects.inc();
        disconnect(shared, socket);
    }
    first
}

/// Disconnects a socket from its namespace, retrying while its queue is full.
pub fn disconnect(shared: &impl Sink, socket: &SocketRef<Adapter>) {
    let socket = socket.clone();
    let give_up_after = shared.app().config.ping_timeout();
    match socket.clone().disconnect() {
        Err(SocketError::InternalChannelFull) => {}
        _ => return,
    }
    tokio::spawn(async move {
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
