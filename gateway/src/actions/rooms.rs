//! Chat rooms of `/`: create, join, leave, message, history, list and describe. A room's
//! members are in its Socket.IO room ([`chat_room`]) and in the cluster's room registry.

use chrono::Utc;
use cluster::{CreateOutcome, HistoryScope, JoinOutcome, LeaveOutcome, Member, RoomRecord};
use serde_json::{Map, Value, json};
use socketioxide::extract::SocketRef;

use super::delivery::{sanitized, store_then_broadcast};
use crate::password_guard::Refusal;
use crate::protocol::names::MAIN;
use crate::protocol::now;
use crate::protocol::outgoing::room_member;
use crate::protocol::payloads::{CreateRoom, JoinRoom, RoomHistory, RoomMessage};
use crate::protocol::rooms::{chat_room, chat_room_id};
use crate::sockets::{Cx, Outcome, Reject, Session, Shared, emit, fields};
use crate::{Adapter, passwords};

/// The refusal of an event about a room the socket is not in.
pub const NOT_MEMBER: &str = "You are not a member of this room";

/// The chat rooms (ids) this socket is in.
pub fn member_rooms(s: &SocketRef<Adapter>) -> Vec<String> {
    s.rooms()
        .iter()
        .filter_map(|r| chat_room_id(r).map(str::to_owned))
        .collect()
}

/// Whether the socket is in chat room `room_id`.
pub fn is_member(s: &SocketRef<Adapter>, room_id: &str) -> bool {
    let key = chat_room(room_id);
    s.rooms().iter().any(|r| *r == key)
}

/// `create room`: bounded per node and per creator, hashed password.
pub async fn create(cx: &Cx, r: CreateRoom) -> Outcome {
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
                .await
                .map_err(|refusal| {
                    count_refusal(cx, &refusal);
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

/// A password attempt refused by a limit is counted; one refused because Redis is down is not a
/// limit's doing.
fn count_refusal(cx: &Cx, refusal: &Refusal) {
    if *refusal != Refusal::Unavailable {
        cx.app().metrics.state_limit_refusals.inc();
    }
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

/// `join room`: password, capacity, registry, Socket.IO room, `room joined` and `user joined`.
pub async fn join(cx: &Cx, j: JoinRoom) -> Outcome {
    let limits = &cx.app().config.args.state_limits;
    if !is_member(&cx.socket, &j.room_id)
        && member_rooms(&cx.socket).len() >= limits.max_rooms_per_socket as usize
    {
        cx.app().metrics.state_limit_refusals.inc();
        return Err(room_error(cx, &limits.too_many_rooms()));
    }
    let backends = &cx.app().backends;
    let Some(room) = backends.rooms.get(&j.room_id).await? else {
        return Err(room_error(cx, "Room does not exist"));
    };
    if let Some(hash) = room.password_hash.clone() {
        let Some(pw) = j.password else {
            return Err(room_error(cx, "Wrong room password"));
        };
        let attempt = cx
            .shared
            .passwords
            .begin(cx.session.user_id(), Some(&room.id))
            .await
            .map_err(|refusal| {
                count_refusal(cx, &refusal);
                room_error(cx, &refusal.to_string())
            })?;
        if !passwords::verify_blocking(pw, hash).await {
            attempt.failed().await;
            return Err(room_error(cx, "Wrong room password"));
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
        JoinOutcome::NoSuchRoom => return Err(room_error(cx, "Room does not exist")),
        JoinOutcome::Full => return Err(room_error(cx, "Room is full")),
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
        &room_member(
            cx.socket.id.as_str(),
            cx.session.user_id(),
            &cx.session.username(),
            &j.room_id,
            user_count,
        ),
    )
    .await;
    Ok(fields([("roomId", Value::String(j.room_id))]))
}

/// Leaves a room: registry, Socket.IO room, `user left` to the remaining members.
/// `false` when the socket was not a member.
pub async fn leave(
    shared: &Shared,
    s: &SocketRef<Adapter>,
    session: &Session,
    room_id: &str,
) -> bool {
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
    tracing::debug!(room = room_id, socket = %sid, ?outcome, "left room in the registry");
    let LeaveOutcome::Left { user_count, .. } = outcome else {
        return false;
    };
    if let Some(op) = shared.io.of(MAIN) {
        let _ = emit::broadcast(
            shared,
            op.to(chat_room(room_id)),
            "user left",
            &room_member(
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

/// `leave room`.
pub async fn leave_room(cx: &Cx, room_id: String) -> Outcome {
    if !leave(&cx.shared, &cx.socket, &cx.session, &room_id).await {
        return Err(Reject(NOT_MEMBER.to_owned()));
    }
    Ok(fields([("roomId", Value::String(room_id))]))
}

/// `room message`: stored in the room's history, then sent to the other members.
pub async fn message(cx: &Cx, m: RoomMessage) -> Outcome {
    if !is_member(&cx.socket, &m.room_id) {
        return Err(Reject(NOT_MEMBER.to_owned()));
    }
    let message = sanitized(cx, &m.message)?;
    let msg = json!({
        "from": cx.session.user_id(),
        "username": cx.session.username(),
        "message": message,
        "roomId": m.room_id,
        "timestamp": now(),
    });
    let op = cx.socket.to(chat_room(&m.room_id));
    store_then_broadcast(cx, HistoryScope::Room(m.room_id), op, "room message", &msg).await?;
    Ok(Map::new())
}

/// `room history`.
pub async fn history(cx: &Cx, h: RoomHistory) -> Outcome {
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

/// `get rooms`: the public rooms with their member counts.
pub async fn list(cx: &Cx) -> Outcome {
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

/// `get room info`.
pub async fn info(cx: &Cx, room_id: String) -> Outcome {
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
