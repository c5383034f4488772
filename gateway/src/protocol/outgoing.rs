//! Payloads the gateway sends that more than one use case builds (docs/protocol.md, section
//! "Namespaces and events").

use serde_json::{Value, json};

/// The `user online` and `user offline` payload.
pub fn user_presence(user_id: &str, username: &str) -> Value {
    json!({ "userId": user_id, "username": username })
}

/// The `user joined` and `user left` payload: a member and the room's member count after it.
pub fn room_member(
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
