//! Namespace `/chat` (docs/protocol.md, section "Namespaces and events"): `chat message` and
//! `private message`, scoped to `/chat`.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::SocketRef;

use super::dispatch::{on, on_disconnect_count};
use crate::Adapter;
use crate::actions::messages;
use crate::protocol::payloads;
use crate::sockets::{Cx, Outcome, Shared};

/// Registers the handlers of a `/chat` socket.
pub fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on(s, shared, "chat message", chat_message);
    on(s, shared, "private message", private_message);
    on_disconnect_count(shared, s);
}

async fn chat_message(cx: Cx, v: Value) -> Outcome {
    messages::chat_ns_message(&cx, payloads::chat_message(&v)?).await
}

async fn private_message(cx: Cx, v: Value) -> Outcome {
    let (to, content) = payloads::chat_private_message(&v)?;
    messages::chat_ns_private_message(&cx, to, content).await
}
