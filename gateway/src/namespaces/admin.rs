//! Namespace `/admin` (role admin, PROTOCOL.md section 6).

use std::sync::Arc;

use serde_json::{Map, Value};
use socketioxide::extract::SocketRef;

use super::{Cx, Outcome, Reject, Shared, emit, fields, on};
use crate::Adapter;
use crate::actions::{self, ActionError};
use crate::protocol::payloads;

/// Registers the handlers of an `/admin` socket.
pub fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on(s, shared, "get stats", get_stats);
    on(s, shared, "broadcast message", broadcast_message);
    on(s, shared, "kick user", kick_user);
    on(s, shared, "ban user", ban_user);
    on(s, shared, "unban user", unban_user);
    super::on_disconnect_count(shared, s);
}

impl From<ActionError> for Reject {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::State(e) => e.into(),
            other => Reject(other.to_string()),
        }
    }
}

async fn get_stats(cx: Cx, _: Value) -> Outcome {
    let overview = crate::node_stats::cluster_overview(&cx.shared.app, &cx.shared.io).await?;
    let value = serde_json::to_value(&overview)
        .map_err(|e| Reject(format!("Statistics could not be encoded: {e}")))?;
    emit::to_socket(&cx.shared, &cx.socket, "stats", &value);
    let mut ack = match value.clone() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    ack.insert("stats".into(), value);
    Ok(ack)
}

async fn broadcast_message(cx: Cx, v: Value) -> Outcome {
    let message = payloads::broadcast_message(&v)?;
    actions::announce(&cx.shared.app, &cx.shared.io, &message).await?;
    Ok(Map::new())
}

async fn kick_user(cx: Cx, v: Value) -> Outcome {
    let socket_id = payloads::kick_target(&v)?;
    if !actions::kick(&cx.shared.app, &cx.shared.io, &socket_id, "Kicked by admin").await? {
        return Err(Reject("Socket not found".to_owned()));
    }
    Ok(fields([("socketId", Value::String(socket_id))]))
}

async fn ban_user(cx: Cx, v: Value) -> Outcome {
    let b = payloads::ban_user(&v)?;
    let ban = actions::ban_user(&cx.shared.app, &cx.shared.io, &b, cx.session.user_id()).await?;
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
    let lifted = actions::unban_user(&cx.shared.app, &user_id).await?;
    Ok(fields([
        ("userId", Value::String(user_id)),
        ("lifted", Value::Bool(lifted)),
    ]))
}
