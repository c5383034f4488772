//! Namespace `/chat` (PROTOCOL.md section 4): `chat message` and `private message`, scoped to
//! `/chat`.

use std::sync::Arc;

use cluster::HistoryScope;
use serde_json::{Value, json};
use socketioxide::extract::SocketRef;

use super::{CHAT, Cx, Outcome, Reject, Shared, emit, fields, now, on};
use crate::Adapter;
use crate::protocol::payloads;
use crate::protocol::rooms::{chat_history, user_room};

/// Registers the handlers of a `/chat` socket.
pub fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on(s, shared, "chat message", chat_message);
    on(s, shared, "private message", private_message);
    super::on_disconnect_count(shared, s);
}

async fn chat_message(cx: Cx, v: Value) -> Outcome {
    super::main_ns::deliver_chat_message(cx, v, |room| HistoryScope::Namespace(chat_history(room)))
        .await
}

async fn private_message(cx: Cx, v: Value) -> Outcome {
    let (to, content) = payloads::chat_private_message(&v)?;
    let content = super::main_ns::sanitized(&cx, &content)?;
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
