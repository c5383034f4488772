//! Namespace `/chat` (PROTOCOL.md section 4): `chat message` and `private message`, scoped to
//! `/chat`.

use std::sync::Arc;

use cluster::HistoryScope;
use serde_json::{Value, json};
use socketioxide::extract::SocketRef;

use super::admission::user_room;
use super::{CHAT, Cx, Outcome, Reject, Shared, emit, fields, now, on};
use crate::Adapter;
use crate::validation;

/// Registers the handlers of a `/chat` socket.
pub fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on(s, shared, "chat message", chat_message);
    on(s, shared, "private message", private_message);
    super::on_disconnect_count(shared, s);
}

async fn chat_message(cx: Cx, v: Value) -> Outcome {
    let m = validation::chat_message(&v)?;
    let content = cx
        .shared
        .sanitizer
        .clean(&m.content)
        .ok_or_else(|| Reject("Message is empty after sanitising".to_owned()))?;
    let room = m.room_id.as_ref().map(|r| super::main_ns::room_key(r));
    if let Some(key) = &room
        && !cx.socket.rooms().iter().any(|r| r == key)
    {
        return Err(Reject("You are not a member of this room".to_owned()));
    }
    let id = uuid::Uuid::new_v4().to_string();
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
    let scope = match &m.room_id {
        Some(r) => HistoryScope::Room(format!("{CHAT}#{r}")),
        None => HistoryScope::Namespace(CHAT.to_owned()),
    };
    cx.app()
        .backends
        .history
        .append(&scope, msg.clone())
        .await?;
    let op = match room {
        Some(key) => cx.socket.to(key),
        None => cx.socket.broadcast(),
    };
    emit::broadcast(&cx.shared, op, "chat message", &msg)
        .await
        .map_err(|_| Reject("Message could not be delivered".to_owned()))?;
    Ok(fields([("messageId", Value::String(id))]))
}

async fn private_message(cx: Cx, v: Value) -> Outcome {
    let (to, content) = validation::chat_private_message(&v)?;
    let content = cx
        .shared
        .sanitizer
        .clean(&content)
        .ok_or_else(|| Reject("Message is empty after sanitising".to_owned()))?;
    let id = uuid::Uuid::new_v4().to_string();
    let msg = json!({
        "id": id,
        "from": cx.session.user_id(),
        "username": cx.session.username(),
        "to": to,
        "content": content,
        "type": "private",
        "timestamp": now(),
    });
    cx.app()
        .backends
        .history
        .append(
            &HistoryScope::private(cx.session.user_id(), &to),
            msg.clone(),
        )
        .await?;
    let op = cx
        .shared
        .io
        .of(CHAT)
        .ok_or_else(|| Reject("Namespace unavailable".to_owned()))?;
    emit::broadcast(&cx.shared, op.to(user_room(&to)), "private message", &msg)
        .await
        .map_err(|_| Reject("Message could not be delivered".to_owned()))?;
    emit::to_socket(
        &cx.shared,
        &cx.socket,
        "message sent",
        &json!({ "messageId": id }),
    );
    Ok(fields([("messageId", Value::String(id))]))
}
