//! The main namespace `/` (docs/protocol.md, section "Namespaces and events"): rooms, chat and
//! private messages, presence.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::SocketRef;

use super::dispatch::{on, on_disconnect};
use crate::Adapter;
use crate::actions::{messages, presence, presence_guard, rooms};
use crate::protocol::payloads;
use crate::sockets::{Cx, Outcome, Session, Shared};

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
    on_disconnect(shared, s, |shared, s, reason| {
        // Read here, not in the handler's task: socketioxide spawns that task, and a transport
        // close read right after a DISCONNECT packet takes the socket out of its rooms without
        // waiting for it (gateway/tests/disconnect_rooms.rs).
        let held = rooms::member_rooms(&s);
        async move { presence::disconnected(&shared, s, reason, held).await }
    });
    presence::arrived(shared, s, session).await;
    presence_guard::watch(shared, s.id, session);
}

async fn chat_message(cx: Cx, v: Value) -> Outcome {
    messages::chat_message(&cx, payloads::chat_message(&v)?).await
}

async fn private_message(cx: Cx, v: Value) -> Outcome {
    messages::private_message(&cx, payloads::private_message(&v)?).await
}

async fn set_username(cx: Cx, v: Value) -> Outcome {
    messages::set_username(&cx, payloads::username(&v)?).await
}

async fn create_room(cx: Cx, v: Value) -> Outcome {
    rooms::create(&cx, payloads::create_room(&v)?).await
}

async fn join_room(cx: Cx, v: Value) -> Outcome {
    rooms::join(&cx, payloads::join_room(&v)?).await
}

async fn leave_room(cx: Cx, v: Value) -> Outcome {
    rooms::leave_room(&cx, payloads::room_id(&v)?).await
}

async fn room_message(cx: Cx, v: Value) -> Outcome {
    rooms::message(&cx, payloads::room_message(&v)?).await
}

async fn room_history(cx: Cx, v: Value) -> Outcome {
    rooms::history(&cx, payloads::room_history(&v)?).await
}

async fn get_rooms(cx: Cx, _: Value) -> Outcome {
    rooms::list(&cx).await
}

async fn get_room_info(cx: Cx, v: Value) -> Outcome {
    rooms::info(&cx, payloads::room_id(&v)?).await
}

async fn get_online_users(cx: Cx, _: Value) -> Outcome {
    presence::online_users(&cx).await
}
