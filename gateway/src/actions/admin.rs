//! Admin actions shared by the `/admin` namespace and the `/api/*` routes (docs/protocol.md,
//! sections "Namespaces and events" and "HTTP routes"). Every action goes through `io.of(ns)`
//! broadcasts, which a cluster adapter carries to every node.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::ActionError;
use crate::protocol::names::{ALL, MAIN, is_reserved};
use crate::protocol::payloads::{BanUser, MAX_CONTENT, MAX_ID};
use crate::protocol::rooms::user_room;
use crate::sockets::{Cx, Outcome, Reject, Shared, emit};
use crate::{Adapter, Io};

/// Reason given when a ban names none.
pub const DEFAULT_BAN_REASON: &str = "Banned by admin";

fn check_len(field: &str, s: &str, max: usize) -> Result<(), ActionError> {
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(ActionError::Invalid(format!(
            "\"{field}\" must be 1 to {max} characters long"
        )));
    }
    Ok(())
}

fn operator(
    io: &Io,
    ns: &str,
) -> Result<socketioxide::operators::BroadcastOperators<Adapter>, ActionError> {
    io.of(ns)
        .ok_or_else(|| ActionError::UnknownNamespace(ns.to_owned()))
}

/// Every `/` socket on every node gets `system message`
/// `{ type: "announcement", content, from: "system", timestamp }`.
pub async fn announce(shared: &Shared, message: &str) -> Result<(), ActionError> {
    let message = message.trim();
    check_len("message", message, MAX_CONTENT)?;
    let payload = json!({
        "type": "announcement",
        "content": message,
        "from": "system",
        "timestamp": crate::protocol::now(),
    });
    emit::broadcast(
        shared,
        operator(&shared.io, MAIN)?.broadcast(),
        "system message",
        &payload,
    )
    .await
    .map_err(|e| ActionError::Broadcast(e.to_string()))
}

/// Bans a user: stores the ban (for `duration_secs`, permanent when `None`), then every socket of
/// the user, in every namespace, gets `banned` `{ reason }` and is disconnected. `request` comes
/// from [`crate::protocol::payloads::ban_user`], the one validator of the socket and the HTTP path.
pub async fn ban_user(
    shared: &Shared,
    request: &BanUser,
    by: &str,
) -> Result<cluster::Ban, ActionError> {
    let user_id = request.user_id.as_str();
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_BAN_REASON);
    let app = &shared.app;
    let created_at = Utc::now();
    let expires_at = match request.duration_secs {
        None => None,
        Some(secs) => {
            let secs = i64::try_from(secs)
                .ok()
                .and_then(chrono::TimeDelta::try_seconds)
                .ok_or_else(|| ActionError::Invalid("\"durationSecs\" is too large".into()))?;
            Some(
                created_at
                    .checked_add_signed(secs)
                    .ok_or_else(|| ActionError::Invalid("\"durationSecs\" is too large".into()))?,
            )
        }
    };
    let ban = cluster::Ban {
        user_id: user_id.to_owned(),
        reason: reason.to_owned(),
        banned_by: by.to_owned(),
        created_at,
        expires_at,
    };
    app.backends.bans.ban(ban.clone()).await?;
    tracing::info!(user = user_id, by, ?expires_at, "user banned");
    enforce_ban_locally(shared, user_id, reason).await?;
    // Other nodes disconnect their own sockets of the user when they read `user_banned` (the
    // original design's control message, so its Node.js nodes act on it too).
    if let Some(redis) = app.link.redis() {
        let notice = cluster::bus::UserBanned {
            user_id: user_id.to_owned(),
            reason: reason.to_owned(),
            banned_by: Some(by.to_owned()),
            expires_at,
        };
        if let Err(e) = redis.bus().publish_user_banned(notice).await {
            tracing::warn!(error = %e, user = user_id, "cannot tell other nodes about a ban");
            return Err(e.into());
        }
    }
    Ok(ban)
}

/// Sends `banned` to every socket of the user that this node holds, in every namespace, and
/// disconnects them. Other nodes do the same for theirs on `user_banned`.
pub async fn enforce_ban_locally(
    shared: &Shared,
    user_id: &str,
    reason: &str,
) -> Result<(), ActionError> {
    let room = user_room(user_id);
    for ns in ALL {
        notify_and_disconnect(
            shared,
            ns,
            &room,
            "banned",
            &json!({ "reason": reason }),
            true,
        )
        .await?;
    }
    Ok(())
}

/// Emits `event` to `room` of `ns`, then disconnects the sockets in it.
async fn notify_and_disconnect(
    shared: &Shared,
    ns: &str,
    room: &str,
    event: &str,
    data: &Value,
    local_only: bool,
) -> Result<(), ActionError> {
    let op = if local_only {
        operator(&shared.io, ns)?.local()
    } else {
        operator(&shared.io, ns)?
    };
    emit::broadcast(shared, op.clone().to(room.to_owned()), event, data)
        .await
        .map_err(|e| ActionError::Broadcast(e.to_string()))?;
    if let Err(e) = op.clone().to(room.to_owned()).disconnect().await {
        // Sockets whose queue is full cannot take the DISCONNECT packet yet: retry them.
        tracing::debug!(ns, room, error = %e, "disconnect hit full queues; retrying locally");
        for socket in op.local().to(room.to_owned()).sockets() {
            emit::disconnect(shared, &socket);
        }
    }
    Ok(())
}

/// Lifts a ban; `true` when there was one.
pub async fn unban_user(shared: &Shared, user_id: &str) -> Result<bool, ActionError> {
    check_len("userId", user_id, MAX_ID)?;
    let lifted = shared.app.backends.bans.unban(user_id).await?;
    tracing::info!(user = user_id, lifted, "user unbanned");
    Ok(lifted)
}

/// The socket `socket_id` (any namespace, any node) gets `kicked` `{ reason }` and is
/// disconnected. `false` when no such socket is known.
pub async fn kick(shared: &Shared, socket_id: &str, reason: &str) -> Result<bool, ActionError> {
    check_len("socketId", socket_id, MAX_ID)?;
    let mut found = shared
        .app
        .backends
        .presence
        .find_socket(socket_id)
        .await?
        .is_some();
    for ns in ALL {
        let op = operator(&shared.io, ns)?;
        if !found {
            found = op
                .clone()
                .within(socket_id.to_owned())
                .fetch_sockets()
                .await
                .map(|s| !s.is_empty())
                .unwrap_or(false);
        }
    }
    if !found {
        return Ok(false);
    }
    for ns in ALL {
        notify_and_disconnect(
            shared,
            ns,
            socket_id,
            "kicked",
            &json!({ "reason": reason }),
            false,
        )
        .await?;
    }
    tracing::info!(socket = socket_id, reason, "socket kicked");
    Ok(true)
}

/// Emits `event` with `data` to a namespace (default `/`), or to one room of it.
pub async fn emit(
    shared: &Shared,
    namespace: Option<&str>,
    room: Option<&str>,
    event: &str,
    data: Value,
) -> Result<(), ActionError> {
    check_len("event", event, 200)?;
    if is_reserved(event) {
        return Err(ActionError::Invalid(format!(
            "\"{event}\" is a reserved event name"
        )));
    }
    let ns = namespace.filter(|n| !n.is_empty()).unwrap_or(MAIN);
    let op = operator(&shared.io, ns)?;
    let op = match room.filter(|r| !r.is_empty()) {
        Some(room) => op.to(room.to_owned()),
        None => op.broadcast(),
    };
    emit::broadcast(shared, op, event, &data)
        .await
        .map_err(|e| ActionError::Broadcast(e.to_string()))
}

/// `get stats`: the cluster overview, as a `stats` event and in the ack.
pub async fn stats(cx: &Cx) -> Outcome {
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
