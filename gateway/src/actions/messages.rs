//! Chat and private messages of `/` and `/chat`, and display names: sanitised, stored in
//! history, then delivered.

use cluster::HistoryScope;
use serde_json::{Value, json};
use socketioxide::operators::BroadcastOperators;

use super::delivery::{sanitized, store_then_broadcast};
use super::rooms::{NOT_MEMBER, is_member};
use crate::Adapter;
use crate::protocol::names::{CHAT, MAIN};
use crate::protocol::now;
use crate::protocol::payloads::{ChatMessage, PrivateMessage};
use crate::protocol::rooms::{chat_history, chat_room, user_room};
use crate::sockets::{Cx, Outcome, Reject, emit, fields};

fn message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `chat message` on `/`: a room's history when it names a room, the namespace's otherwise.
pub async fn chat_message(cx: &Cx, m: ChatMessage) -> Outcome {
    deliver_chat_message(cx, m, |room| match room {
        Some(room) => HistoryScope::Room(room.to_owned()),
        None => HistoryScope::Namespace(MAIN.to_owned()),
    })
    .await
}

/// `chat message` on `/chat`, with histories of its own (see [`chat_history`]).
pub async fn chat_ns_message(cx: &Cx, m: ChatMessage) -> Outcome {
    deliver_chat_message(cx, m, |room| HistoryScope::Namespace(chat_history(room))).await
}

/// `chat message` on `/` and `/chat`: sanitise, check membership of the room, store in the
/// history scope `scope_of(roomId)`, deliver to the room or to everyone else in the namespace.
async fn deliver_chat_message(
    cx: &Cx,
    m: ChatMessage,
    scope_of: impl Fn(Option<&str>) -> HistoryScope,
) -> Outcome {
    let content = sanitized(cx, &m.content)?;
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
    store_then_broadcast(cx, scope_of(m.room_id.as_deref()), op, "chat message", &msg).await?;
    Ok(fields([("messageId", Value::String(id))]))
}

/// `private message` on `/`: to every socket of a user, or (early form) to one socket.
pub async fn private_message(cx: &Cx, parsed: PrivateMessage) -> Outcome {
    let offline = || Reject("User is offline".to_owned());
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
    let content = sanitized(cx, &content)?;
    let id = message_id();
    let mut msg = private_payload(cx, &id, &target, &content);
    if early.is_some()
        && let Some(o) = msg.as_object_mut()
    {
        o.insert("message".into(), Value::String(content.clone()));
        o.insert(
            "fromSocketId".into(),
            Value::String(cx.socket.id.to_string()),
        );
    }
    let op = cx
        .shared
        .io
        .of(MAIN)
        .ok_or_else(|| Reject("Namespace unavailable".to_owned()))?;
    let op = match &early {
        Some(sid) => op.to(sid.clone()),
        None => op.to(user_room(&target)),
    };
    store_then_deliver_private(cx, &target, op, &msg).await?;
    Ok(fields([("messageId", Value::String(id))]))
}

/// `private message` on `/chat`: to every `/chat` socket of an online user; the sender also
/// gets `message sent`.
pub async fn chat_ns_private_message(cx: &Cx, to: String, content: String) -> Outcome {
    let content = sanitized(cx, &content)?;
    let op = cx
        .shared
        .io
        .of(CHAT)
        .ok_or_else(|| Reject("Namespace unavailable".to_owned()))?;
    // Only a user who is online gets a conversation (and a history key): a made-up id must not
    // create state. Presence knows the users on `/`; one on `/chat` alone is asked of the nodes.
    if cx.app().backends.presence.sockets_of(&to).await?.is_empty()
        && op
            .clone()
            .to(user_room(&to))
            .fetch_sockets()
            .await
            .map_or(true, |sockets| sockets.is_empty())
    {
        return Err(Reject("User is offline".to_owned()));
    }
    let id = message_id();
    let msg = private_payload(cx, &id, &to, &content);
    store_then_deliver_private(cx, &to, op.to(user_room(&to)), &msg).await?;
    emit::to_socket(
        &cx.shared,
        &cx.socket,
        "message sent",
        &json!({ "messageId": id }),
    );
    Ok(fields([("messageId", Value::String(id))]))
}

/// The `private message` payload from the sender of `cx` to user `to`.
fn private_payload(cx: &Cx, id: &str, to: &str, content: &str) -> Value {
    json!({
        "id": id,
        "from": cx.session.user_id(),
        "username": cx.session.username(),
        "to": to,
        "content": content,
        "type": "private",
        "timestamp": now(),
    })
}

/// Stores a private message in the conversation's history, then delivers it through `op`:
/// nothing is delivered that was not stored.
async fn store_then_deliver_private(
    cx: &Cx,
    to: &str,
    op: BroadcastOperators<Adapter>,
    msg: &Value,
) -> Result<(), Reject> {
    cx.app()
        .backends
        .history
        .append(
            &HistoryScope::private(cx.session.user_id(), to),
            msg.clone(),
        )
        .await?;
    emit::broadcast(&cx.shared, op, "private message", msg)
        .await
        .map_err(|_| Reject("Message could not be delivered".to_owned()))
}

/// `set username`: this socket's display name, here and in presence.
pub async fn set_username(cx: &Cx, name: String) -> Outcome {
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
