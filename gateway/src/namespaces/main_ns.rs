//! The main namespace `/` (PROTOCOL.md section 3).

use std::sync::Arc;

use chrono::Utc;
use cluster::{
    CreateOutcome, HistoryScope, JoinOutcome, LeaveOutcome, Member, OnlineSocket, RoomRecord,
};
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::DisconnectReason;

use super::presence_guard::PresenceGuard;
use super::{Cx, MAIN, Outcome, Reject, Session, Shared, emit, fields, now, on};
use crate::protocol::payloads::{self, PrivateMessage};
use crate::protocol::rooms::{chat_room, chat_room_id, user_room};
use crate::{Adapter, passwords};

const NOT_MEMBER: &str = "You are not a member of this room";
const EMPTY_AFTER_SANITISING: &str = "Message is empty after sanitising";

/// Registers presence and every event handler of `/` (called by the admission middleware).
pub async fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>, session: &Session) {
    on(s, shared, "chat message", chat_message);
    on(s, shared, "private message", private_message);
    on(s, shared, "set username", set_username);
    on(s, shared, "create room", create_room);
    on(s, shared, "join room", join_room);
    on(s, shared, "leave room", leave_room);
    on(s, shared, "room message", room_message);
    on(s, shared, "room history", room_history);
    on(s, shared, "get rooms", get_rooms);
    on(s, shared, "get room info", get_room_info);
    on(s, shared, "get online users", get_online_users);
    let for_disconnect = Arc::clone(shared);
    s.on_disconnect(move |s: SocketRef<Adapter>, reason: DisconnectReason| {
        let shared = Arc::clone(&for_disconnect);
        async move { disconnected(&shared, s, reason).await }
    });

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
    PresenceGuard::watch(shared, s.id, session);
}

pub(super) async fn forget_presence(shared: &Shared, session: &Session, sid: &str) {
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

/// The `user online` and `user offline` payload.
pub(super) fn user_presence(user_id: &str, username: &str) -> Value {
    json!({ "userId": user_id, "username": username })
}

/// The `user left` payload.
pub(super) fn user_left(
    socket_id: &str,
    user_id: &str,
    username: &str,
    room_id: &str,
    user_count: usize,
) -> Value {
    json!({
        "socketId": socket_id,
        "userId": user_id,
        "username": username,
        "roomId": room_id,
        "userCount": user_count,
    })
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

async fn disconnected(shared: &Arc<Shared>, s: SocketRef<Adapter>, reason: DisconnectReason) {
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
    for room in member_rooms(&s) {
        leave(shared, &s, &session, &room).await;
    }
    forget_presence(shared, &session, &sid).await;
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
            for room in member_rooms(&s) {
                leave(shared, &s, &session, &room).await;
            }
            forget_presence(shared, &session, &s.id.to_string()).await;
            s.extensions.insert(Departed);
        })
        .await;
}

/// The chat rooms (ids) this socket is in.
fn member_rooms(s: &SocketRef<Adapter>) -> Vec<String> {
    s.rooms()
        .iter()
        .filter_map(|r| chat_room_id(r).map(str::to_owned))
        .collect()
}

fn is_member(s: &SocketRef<Adapter>, room_id: &str) -> bool {
    let key = chat_room(room_id);
    s.rooms().iter().any(|r| *r == key)
}

pub(super) fn sanitized(cx: &Cx, content: &str) -> Result<String, Reject> {
    cx.shared
        .sanitizer
        .clean(content)
        .ok_or_else(|| Reject(EMPTY_AFTER_SANITISING.to_owned()))
}

fn message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn chat_message(cx: Cx, v: Value) -> Outcome {
    deliver_chat_message(cx, v, |room| match room {
        Some(room) => HistoryScope::Room(room.to_owned()),
        None => HistoryScope::Namespace(MAIN.to_owned()),
    })
    .await
}

/// `chat message` on `/` and `/chat`: sanitise, check membership of the room, store in the
/// history scope `scope_of(roomId)`, deliver to the room or to everyone else in the namespace.
pub(super) async fn deliver_chat_message(
    cx: Cx,
    v: Value,
    scope_of: impl Fn(Option<&str>) -> HistoryScope,
) -> Outcome {
    let m = payloads::chat_message(&v)?;
    let content = sanitized(&cx, &m.content)?;
    if let Some(room) = &m.room_id
        && !is_member(&cx.socket, room)
    {
        return Err(Reject(NOT_MEMBER.to_owned()));
    }
    let id = message_id();
    let mut msg = json!({
        "id": id,
        "from": cx.session.user_id(),
        "username": cx.session.username(),
        "content": content,
        "type": m.kind,
        "roomId": m.room_id,
        "timestamp": now(),
    });
    if m.early_form
        && let Some(o) = msg.as_object_mut()
    {
        o.insert("message".into(), Value::String(content.clone()));
    }
    let op = match &m.room_id {
        Some(room) => cx.socket.to(chat_room(room)),
        None => cx.socket.broadcast(),
    };
    store_then_broadcast(
        &cx,
        scope_of(m.room_id.as_deref()),
        op,
        "chat message",
        &msg,
    )
    .await?;
    Ok(fields([("messageId", Value::String(id))]))
}

async fn private_message(cx: Cx, v: Value) -> Outcome {
    let offline = || Reject("User is offline".to_owned());
    let parsed = payloads::private_message(&v)?;
    let (target, content, early) = match parsed {
        PrivateMessage::ToUser { to, content } => {
            let sockets = cx.app().backends.presence.sockets_of(&to).await?;
            if sockets.is_empty() {
                return Err(offline());
            }
            (to, content, None)
        }
        PrivateMessage::ToSocket {
            target_socket_id,
            content,
        } => {
            let socket = cx
                .app()
                .backends
                .presence
                .find_socket(&target_socket_id)
                .await?
                .ok_or_else(offline)?;
            (socket.user_id, content, Some(target_socket_id))
        }
    };
    let content = sanitized(&cx, &content)?;
    let id = message_id();
    let mut msg = json!({
        "id": id,
        "from": cx.session.user_id(),
        "username": cx.session.username(),
        "to": target,
        "content": content,
        "type": "private",
        "timestamp": now(),
    });
    if early.is_some()
        && let Some(o) = msg.as_object_mut()
    {
        o.insert("message".into(), Value::String(content.clone()));
        o.insert(
            "fromSocketId".into(),
            Value::String(cx.socket.id.to_string()),
        );
    }
    cx.app()
        .backends
        .history
        .append(
            &HistoryScope::private(cx.session.user_id(), &target),
            msg.clone(),
        )
        .await?;
    let op = cx
        .shared
        .io
        .of(MAIN)
        .ok_or_else(|| Reject("Namespace unavailable".to_owned()))?;
    let op = match &early {
        Some(sid) => op.to(sid.clone()),
        None => op.to(user_room(&target)),
    };
    emit::broadcast(&cx.shared, op, "private message", &msg)
        .await
        .map_err(|_| Reject("Message could not be delivered".to_owned()))?;
    Ok(fields([("messageId", Value::String(id))]))
}

async fn set_username(cx: Cx, v: Value) -> Outcome {
    let name = payloads::username(&v)?;
    let name = crate::sanitize::strip_tags(&name).trim().to_owned();
    if name.is_empty() {
        return Err(Reject("\"username\" must not be blank".to_owned()));
    }
    cx.app()
        .backends
        .presence
        .set_username(cx.session.user_id(), &cx.socket.id.to_string(), &name)
        .await?;
    cx.session.set_username(name.clone());
    Ok(fields([("username", Value::String(name))]))
}

async fn create_room(cx: Cx, v: Value) -> Outcome {
    let r = payloads::create_room(&v)?;
    let rooms = &cx.app().backends.rooms;
    if rooms.get(&r.room_id).await?.is_some() {
        return Err(Reject("Room already exists".to_owned()));
    }
    // Checked before the creation, not with it: concurrent creations may pass it together, so
    // the bound can be overshot by the number of creations in flight, never more.
    let limits = &cx.app().config.args.state_limits;
    if rooms.count().await? >= limits.max_rooms as usize {
        cx.app().metrics.state_limit_refusals.inc();
        return Err(Reject(limits.too_many_rooms_exist()));
    }
    let password_hash = match r.password {
        Some(pw) => {
            let _turn = cx
                .shared
                .passwords
                .begin(cx.session.user_id(), None)
                .map_err(|refusal| {
                    cx.app().metrics.state_limit_refusals.inc();
                    Reject(refusal.to_string())
                })?;
            Some(passwords::hash_blocking(pw).await.map_err(|e| {
                tracing::error!(error = %e, "password hashing failed");
                Reject("Room could not be created".to_owned())
            })?)
        }
        None => None,
    };
    let record = RoomRecord {
        id: r.room_id.clone(),
        name: r.room_name,
        is_private: r.is_private,
        password_hash,
        max_users: r.max_users,
        created_at: Utc::now(),
        created_by: cx.session.user_id().to_owned(),
    };
    match rooms
        .create_bounded(record, limits.max_unjoined_rooms_per_user as usize)
        .await?
    {
        CreateOutcome::Created => {}
        CreateOutcome::Exists => return Err(Reject("Room already exists".to_owned())),
        CreateOutcome::CreatorAtLimit => {
            cx.app().metrics.state_limit_refusals.inc();
            return Err(Reject(limits.too_many_unjoined_rooms()));
        }
    }
    Ok(fields([("roomId", Value::String(r.room_id))]))
}

fn room_error(cx: &Cx, message: &str) -> Reject {
    emit::to_socket(
        &cx.shared,
        &cx.socket,
        "room error",
        &json!({ "message": message }),
    );
    Reject(message.to_owned())
}

async fn join_room(cx: Cx, v: Value) -> Outcome {
    let j = payloads::join_room(&v)?;
    let limits = &cx.app().config.args.state_limits;
    if !is_member(&cx.socket, &j.room_id)
        && member_rooms(&cx.socket).len() >= limits.max_rooms_per_socket as usize
    {
        cx.app().metrics.state_limit_refusals.inc();
        return Err(room_error(&cx, &limits.too_many_rooms()));
    }
    let backends = &cx.app().backends;
    let Some(room) = backends.rooms.get(&j.room_id).await? else {
        return Err(room_error(&cx, "Room does not exist"));
    };
    if let Some(hash) = room.password_hash.clone() {
        let Some(pw) = j.password else {
            return Err(room_error(&cx, "Wrong room password"));
        };
        let attempt = cx
            .shared
            .passwords
            .begin(cx.session.user_id(), Some(&room.id))
            .map_err(|refusal| {
                cx.app().metrics.state_limit_refusals.inc();
                room_error(&cx, &refusal.to_string())
            })?;
        if !passwords::verify_blocking(pw, hash).await {
            attempt.failed();
            return Err(room_error(&cx, "Wrong room password"));
        }
    }
    let member = Member {
        socket_id: cx.socket.id.to_string(),
        user_id: cx.session.user_id().to_owned(),
        username: cx.session.username(),
        node_id: cx.app().server_id.clone(),
    };
    let (user_count, newly_joined) = match backends.rooms.join(&j.room_id, member).await? {
        JoinOutcome::Joined { user_count } => (user_count, true),
        JoinOutcome::AlreadyMember { user_count } => (user_count, false),
        JoinOutcome::NoSuchRoom => return Err(room_error(&cx, "Room does not exist")),
        JoinOutcome::Full => return Err(room_error(&cx, "Room is full")),
    };
    let key = chat_room(&j.room_id);
    cx.socket.join(key.clone());
    cx.shared.joined_rooms.remember(&room);
    // Subscribed to the room's channel before the ack: messages from other nodes are not missed.
    cx.shared
        .app
        .link
        .adapter()
        .sync_rooms_with(MAIN, [key])
        .await;
    let users: Vec<String> = backends
        .rooms
        .members(&j.room_id)
        .await?
        .into_iter()
        .map(|m| m.socket_id)
        .collect();
    emit::to_socket(
        &cx.shared,
        &cx.socket,
        "room joined",
        &json!({
            "roomId": j.room_id,
            "roomName": room.name,
            "userCount": user_count,
            "users": users,
        }),
    );
    if !newly_joined {
        return Ok(fields([("roomId", Value::String(j.room_id))]));
    }
    let _ = emit::broadcast(
        &cx.shared,
        cx.socket.to(chat_room(&j.room_id)),
        "user joined",
        &json!({
            "socketId": cx.socket.id.to_string(),
            "userId": cx.session.user_id(),
            "username": cx.session.username(),
            "roomId": j.room_id,
            "userCount": user_count,
        }),
    )
    .await;
    Ok(fields([("roomId", Value::String(j.room_id))]))
}

/// Leaves a room: registry, Socket.IO room, `user left` to the remaining members.
/// `false` when the socket was not a member.
async fn leave(shared: &Shared, s: &SocketRef<Adapter>, session: &Session, room_id: &str) -> bool {
    let sid = s.id.to_string();
    s.leave(chat_room(room_id));
    shared.joined_rooms.forget_unless(room_id, || {
        shared
            .io
            .of(MAIN)
            .is_some_and(|op| !op.local().within(chat_room(room_id)).sockets().is_empty())
    });
    let outcome = match shared.app.backends.rooms.leave(room_id, &sid).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, room = room_id, socket = %sid, "room registry unavailable on leave");
            return false;
        }
    };
    let LeaveOutcome::Left { user_count, .. } = outcome else {
        return false;
    };
    if let Some(op) = shared.io.of(MAIN) {
        let _ = emit::broadcast(
            shared,
            op.to(chat_room(room_id)),
            "user left",
            &user_left(
                &sid,
                session.user_id(),
                &session.username(),
                room_id,
                user_count,
            ),
        )
        .await;
    }
    true
}

async fn leave_room(cx: Cx, v: Value) -> Outcome {
    let room_id = payloads::room_id(&v)?;
    if !leave(&cx.shared, &cx.socket, &cx.session, &room_id).await {
        return Err(Reject(NOT_MEMBER.to_owned()));
    }
    Ok(fields([("roomId", Value::String(room_id))]))
}

async fn room_message(cx: Cx, v: Value) -> Outcome {
    let m = payloads::room_message(&v)?;
    if !is_member(&cx.socket, &m.room_id) {
        return Err(Reject(NOT_MEMBER.to_owned()));
    }
    let message = sanitized(&cx, &m.message)?;
    let msg = json!({
        "from": cx.session.user_id(),
        "username": cx.session.username(),
        "message": message,
        "roomId": m.room_id,
        "timestamp": now(),
    });
    let op = cx.socket.to(chat_room(&m.room_id));
    store_then_broadcast(&cx, HistoryScope::Room(m.room_id), op, "room message", &msg).await?;
    Ok(Map::new())
}

/// Stores `msg` in `scope`'s history, then broadcasts it through `op`. The append is only
/// queued before the socket's next event may start (see `history_writer`); the broadcast waits
/// for its own append and for the socket's earlier broadcasts, so arrival order holds for both
/// history and receivers, and nothing is broadcast that was not stored.
async fn store_then_broadcast(
    cx: &Cx,
    scope: HistoryScope,
    op: BroadcastOperators<Adapter>,
    event: &str,
    msg: &Value,
) -> Result<(), Reject> {
    let stored = cx.shared.history_writer.append(scope, msg.clone()).await;
    let mut turn = cx.session.broadcast_turn();
    cx.let_next_run();
    stored.wait().await?;
    turn.wait().await;
    emit::broadcast(&cx.shared, op, event, msg)
        .await
        .map_err(|_| Reject("Message could not be delivered".to_owned()))
}

async fn room_history(cx: Cx, v: Value) -> Outcome {
    let h = payloads::room_history(&v)?;
    let backends = &cx.app().backends;
    let Some(room) = backends.rooms.get(&h.room_id).await? else {
        return Err(Reject("Room does not exist".to_owned()));
    };
    if room.is_private && !is_member(&cx.socket, &h.room_id) {
        return Err(Reject(NOT_MEMBER.to_owned()));
    }
    let messages = backends
        .history
        .recent(&HistoryScope::Room(h.room_id), h.limit)
        .await?;
    Ok(fields([("messages", Value::Array(messages))]))
}

fn room_summary(room: &RoomRecord, user_count: usize) -> Map<String, Value> {
    fields([
        ("id", Value::String(room.id.clone())),
        ("name", Value::String(room.name.clone())),
        ("userCount", json!(user_count)),
        ("maxUsers", json!(room.max_users)),
        ("createdAt", json!(room.created_at)),
        ("isPrivate", Value::Bool(room.is_private)),
    ])
}

async fn get_rooms(cx: Cx, _: Value) -> Outcome {
    let backends = &cx.app().backends;
    // One round trip on Redis, however many rooms there are.
    let rooms: Vec<Value> = backends
        .rooms
        .list_with_counts()
        .await?
        .into_iter()
        .filter(|(room, _)| !room.is_private)
        .map(|(room, count)| Value::Object(room_summary(&room, count)))
        .collect();
    if !cx.ack_wanted {
        emit::to_socket(&cx.shared, &cx.socket, "room list", &rooms);
    }
    Ok(fields([("rooms", Value::Array(rooms))]))
}

async fn get_room_info(cx: Cx, v: Value) -> Outcome {
    let room_id = payloads::room_id(&v)?;
    let backends = &cx.app().backends;
    let info = match backends.rooms.get(&room_id).await? {
        None => Value::Null,
        Some(room) => {
            let members = backends.rooms.members(&room_id).await?;
            let mut summary = room_summary(&room, members.len());
            summary.insert(
                "users".into(),
                json!(members.into_iter().map(|m| m.socket_id).collect::<Vec<_>>()),
            );
            Value::Object(summary)
        }
    };
    if !cx.ack_wanted {
        emit::to_socket(&cx.shared, &cx.socket, "room info", &info);
    }
    Ok(fields([("room", info)]))
}

async fn get_online_users(cx: Cx, _: Value) -> Outcome {
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
