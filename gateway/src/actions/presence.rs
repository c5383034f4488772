//! Who is online: a socket's arrival and departure on `/` (`user online`, `user offline`,
//! `welcome`), a shutting-down node's departures, and `get online users`.

use std::sync::Arc;

use cluster::OnlineSocket;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;

use crate::Adapter;
use crate::protocol::names::MAIN;
use crate::protocol::now;
use crate::protocol::outgoing::user_presence;
use crate::protocol::rooms::user_room;
use crate::sockets::{Cx, Outcome, Session, Shared, emit, fields};

/// Records a socket admitted to `/` as online (`user online` to everyone else when it is the
/// user's first socket). The caller schedules the check that it really entered
/// (`presence_guard::watch`).
pub async fn arrived(shared: &Arc<Shared>, s: &SocketRef<Adapter>, session: &Session) {
    let online = OnlineSocket {
        user_id: session.user_id().to_owned(),
        username: session.username(),
        socket_id: s.id.to_string(),
        node_id: shared.app.server_id.clone(),
    };
    match shared.app.backends.presence.socket_connected(online).await {
        Ok(true) => {
            if let Some(op) = shared.io.of(MAIN) {
                let payload = user_presence(session.user_id(), &session.username());
                let _ = emit::broadcast(
                    shared,
                    op.except(user_room(session.user_id())),
                    "user online",
                    &payload,
                )
                .await;
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, socket = %s.id, "presence unavailable on connect"),
    }
}

/// Puts an admitted socket of `ns` in its own rooms: its user's room and its socket id.
pub async fn join_own_rooms(shared: &Shared, ns: &str, s: &SocketRef<Adapter>, session: &Session) {
    let user_room = user_room(session.user_id());
    let own_room = s.id.to_string();
    s.join([user_room.clone(), own_room.clone()]);
    // In cluster mode, be subscribed to the user's room (and, in the sharded dynamic modes,
    // to the socket's own channel; the classic adapter's pattern covers it) before the CONNECT
    // ack, so a private message sent from another node right after `connect` is not missed.
    shared
        .app
        .link
        .adapter()
        .sync_rooms_with(ns, [user_room, own_room])
        .await;
}

/// Takes a socket out of presence (`user offline` when it was the user's last socket).
pub async fn forget(shared: &Shared, session: &Session, sid: &str) {
    match shared
        .app
        .backends
        .presence
        .socket_disconnected(session.user_id(), sid)
        .await
    {
        Ok(true) => {
            if let Some(op) = shared.io.of(MAIN) {
                let payload = user_presence(session.user_id(), &session.username());
                // The leaving socket is still listed while its disconnect handler runs.
                let _ =
                    emit::broadcast(shared, op.except(sid.to_owned()), "user offline", &payload)
                        .await;
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, socket = %sid, "presence unavailable on disconnect"),
    }
}

/// Sends `welcome` (from the connect handler, once the socket is connected).
pub fn welcome(shared: &Shared, s: &SocketRef<Adapter>) {
    let Some(session) = Session::of(s) else {
        return;
    };
    emit::to_socket(
        shared,
        s,
        "welcome",
        &json!({
            "message": format!("Welcome, {}!", session.username()),
            "serverId": shared.app.server_id,
            "socketId": s.id.to_string(),
            "userId": session.user_id(),
            "username": session.username(),
            "timestamp": now(),
        }),
    );
}

/// A socket of `/` disconnected: it leaves `held` (the chat rooms it was in when the disconnect
/// began, read by the caller before socketioxide may empty them), then presence.
pub async fn disconnected(
    shared: &Arc<Shared>,
    s: SocketRef<Adapter>,
    reason: DisconnectReason,
    held: Vec<String>,
) {
    shared.app.metrics.connections_active.dec();
    let Some(session) = Session::of(&s) else {
        return;
    };
    tracing::debug!(socket = %s.id, user = session.user_id(), ?reason, "socket disconnected");
    if s.extensions.get::<Departed>().is_some() {
        // A shutting-down node already took it out of rooms and presence.
        return;
    }
    let sid = s.id.to_string();
    tracing::debug!(socket = %s.id, rooms = ?held, "leaving rooms on disconnect");
    for room in held {
        super::rooms::leave(shared, &s, &session, &room).await;
    }
    forget(shared, &session, &sid).await;
}

/// Marks a socket [`depart_all`] took out of the cluster state, so its disconnect handler does
/// not spend another Redis round trip on presence it no longer has.
#[derive(Debug, Clone, Copy)]
struct Departed;

/// Takes every local socket of `/` out of its rooms and out of presence, with the same events
/// as a disconnect, while the sockets are still connected (a node that is shutting down, whose
/// namespaces are gone by the time the disconnect handlers run).
///
/// Up to `in_flight` sockets depart at once: each departure is a few Redis round trips, so one
/// socket at a time made a node with thousands of sockets overrun its grace period. Each
/// socket's own steps stay in order (rooms, then presence); the room and presence updates are
/// atomic per call, so sockets of one user departing together still send one `user offline`.
pub async fn depart_all(shared: &Arc<Shared>, in_flight: usize) {
    let Some(main) = shared.io.of(MAIN) else {
        return;
    };
    futures_util::stream::iter(main.local().sockets())
        .for_each_concurrent(in_flight.max(1), |s| async move {
            let Some(session) = Session::of(&s) else {
                return;
            };
            for room in super::rooms::member_rooms(&s) {
                super::rooms::leave(shared, &s, &session, &room).await;
            }
            forget(shared, &session, &s.id.to_string()).await;
            s.extensions.insert(Departed);
        })
        .await;
}

/// `get online users`.
pub async fn online_users(cx: &Cx) -> Outcome {
    let users: Vec<Value> = cx
        .app()
        .backends
        .presence
        .online()
        .await?
        .into_iter()
        .map(|o| json!({ "id": o.user_id, "username": o.username, "socketId": o.socket_id }))
        .collect();
    if !cx.ack_wanted {
        emit::to_socket(&cx.shared, &cx.socket, "online users", &users);
    }
    Ok(fields([("users", Value::Array(users))]))
}
