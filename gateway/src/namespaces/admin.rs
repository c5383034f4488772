//! Namespace `/admin` (role admin; docs/protocol.md, section "Namespaces and events").

use std::sync::Arc;

use serde_json::{Map, Value};
use socketioxide::extract::SocketRef;

use super::dispatch::{on, on_disconnect_count};
use crate::Adapter;
use crate::actions::admin as actions;
use crate::protocol::payloads;
use crate::sockets::{Cx, Outcome, Reject, Shared, fields};

/// Registers the handlers of an `/admin` socket.
pub fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on(s, shared, "get stats", get_stats);
    on(s, shared, "broadcast message", broadcast_message);
    on(s, shared, "kick user", kick_user);
    on(s, shared, "ban user", ban_user);
    on(s, shared, "unban user", unban_user);
    on_disconnect_count(shared, s);
}

async fn get_stats(cx: Cx, _: Value) -> Outcome {
    actions::stats(&cx).await
}

async fn broadcast_message(cx: Cx, v: Value) -> Outcome {
    let message = payloads::broadcast_message(&v)?;
    actions::announce(&cx.shared, &message).await?;
    Ok(Map::new())
}

async fn kick_user(cx: Cx, v: Value) -> Outcome {
    let socket_id = payloads::kick_target(&v)?;
    if !actions::kick(&cx.shared, &socket_id, "Kicked by admin").await? {
        return Err(Reject("Socket not found".to_owned()));
    }
    Ok(fields([("socketId", Value::String(socket_id))]))
}

async fn ban_user(cx: Cx, v: Value) -> Outcome {
    let b = payloads::ban_user(&v)?;
    let ban = actions::ban_user(&cx.shared, &b, cx.session.user_id()).await?;
    Ok(fields([
        ("userId", Value::String(ban.user_id)),
        ("reason", Value::String(ban.reason)),
        (
            "expiresAt",
            ban.expires_at
                .map_or(Value::Null, |t| Value::String(t.to_rfc3339())),
        ),
    ]))
}

async fn unban_user(cx: Cx, v: Value) -> Outcome {
    let user_id = payloads::user_id(&v)?;
    let lifted = actions::unban_user(&cx.shared, &user_id).await?;
    Ok(fields([
        ("userId", Value::String(user_id)),
        ("lifted", Value::Bool(lifted)),
    ]))
}
