//! Typed client payloads with the exact limits of PROTOCOL.md sections 3 to 6.
//!
//! Every parser takes the event's first argument as JSON (`Value::Null` when the client sent
//! none). Unknown fields are ignored; a missing required field, a wrong type or a length outside
//! the bounds is a [`Invalid`] whose text is shown to the client. Lengths count characters.

use serde_json::{Map, Value};

/// Longest chat, private and room message.
pub const MAX_CONTENT: usize = 1000;
/// Longest display name.
pub const MAX_USERNAME: usize = 32;
/// Longest room id.
pub const MAX_ROOM_ID: usize = 50;
/// Longest room name.
pub const MAX_ROOM_NAME: usize = 100;
/// Most members a room may allow.
pub const MAX_ROOM_USERS: u64 = 1000;
/// Members a room allows when `maxUsers` is not given.
pub const DEFAULT_ROOM_USERS: u32 = 100;
/// Longest game id.
pub const MAX_GAME_ID: usize = 50;
/// Most history messages per request.
pub const MAX_HISTORY: u64 = 100;
/// History messages returned when `limit` is not given.
pub const DEFAULT_HISTORY: usize = 50;
/// Longest user id or socket id a client may name.
pub const MAX_ID: usize = 128;
/// Longest room password.
pub const MAX_PASSWORD: usize = 128;
/// Longest ban reason.
pub const MAX_REASON: usize = 500;
/// Deepest nesting of a client payload (the payload itself is level 0, its elements level 1)
/// that every event can carry to the other nodes: `game update` puts the payload two levels
/// into the event data (the event array, then the update object), and the adapter's limit is
/// [`adapter_redis::MAX_EVENT_DATA_DEPTH`].
pub const MAX_PAYLOAD_DEPTH: usize = adapter_redis::MAX_EVENT_DATA_DEPTH - 2;

/// Why a payload was refused; the text goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

type Result<T> = std::result::Result<T, Invalid>;

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The refusal of a payload nested deeper than [`MAX_PAYLOAD_DEPTH`] (also given when the
/// Socket.IO parser itself gives up on a deeper one).
pub fn too_deep() -> Invalid {
    invalid(format!(
        "Payload nested too deeply (at most {MAX_PAYLOAD_DEPTH} levels)"
    ))
}

/// Refuses a payload the cluster could not carry unchanged: nested deeper than
/// [`MAX_PAYLOAD_DEPTH`], or holding an object the Redis adapter reads as a binary attachment
/// (`{"_placeholder":true,"num":N}`, which other nodes would receive as `null`). Checked for
/// every event before its handler runs, so nothing changes.
pub fn payload_fits_cluster(v: &Value) -> Result<()> {
    // Iterative: the check itself must not recurse as deep as the input.
    let mut stack = vec![(v, 0usize)];
    while let Some((value, level)) = stack.pop() {
        if level > MAX_PAYLOAD_DEPTH {
            return Err(too_deep());
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, level + 1))),
            Value::Object(map) => {
                if adapter_redis::json::is_placeholder_object(map) {
                    return Err(invalid(
                        "Payload contains a binary placeholder object (_placeholder, num)",
                    ));
                }
                stack.extend(map.values().map(|i| (i, level + 1)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `s` has `min..=max` characters.
fn bounded(field: &str, s: &str, min: usize, max: usize) -> Result<()> {
    let n = s.chars().count();
    if n < min || n > max {
        if min == 1 && n == 0 {
            return Err(invalid(format!("\"{field}\" must not be empty")));
        }
        return Err(invalid(format!(
            "\"{field}\" must be {min} to {max} characters long"
        )));
    }
    Ok(())
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| invalid(format!("{what} must be an object, got {}", type_name(v))))
}

/// A required string field of `min..=max` characters.
fn req_str(o: &Map<String, Value>, field: &str, min: usize, max: usize) -> Result<String> {
    match o.get(field) {
        None | Some(Value::Null) => Err(invalid(format!("\"{field}\" is required"))),
        Some(v) => string(v, field, min, max),
    }
}

/// An optional string field (absent or null is `None`).
fn opt_str(o: &Map<String, Value>, field: &str, min: usize, max: usize) -> Result<Option<String>> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, field, min, max).map(Some),
    }
}

fn string(v: &Value, field: &str, min: usize, max: usize) -> Result<String> {
    let s = v.as_str().ok_or_else(|| {
        invalid(format!(
            "\"{field}\" must be a string, got {}",
            type_name(v)
        ))
    })?;
    bounded(field, s, min, max)?;
    Ok(s.to_owned())
}

fn opt_int(o: &Map<String, Value>, field: &str, min: u64, max: u64) -> Result<Option<u64>> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v.as_u64().or_else(|| {
                // 5.0 is an integer to a JavaScript client.
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                    .map(|f| f as u64)
            });
            match n {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ if v.is_number() => Err(invalid(format!(
                    "\"{field}\" must be an integer from {min} to {max}"
                ))),
                _ => Err(invalid(format!(
                    "\"{field}\" must be an integer, got {}",
                    type_name(v)
                ))),
            }
        }
    }
}

/// A bare string, or an object carrying it under `field` (both forms are in use).
fn string_or_field(v: &Value, field: &str, min: usize, max: usize) -> Result<String> {
    match v {
        Value::String(_) => string(v, field, min, max),
        Value::Object(o) => req_str(o, field, min, max),
        Value::Null => Err(invalid(format!("\"{field}\" is required"))),
        other => Err(invalid(format!(
            "\"{field}\" must be a string, got {}",
            type_name(other)
        ))),
    }
}

/// `type` of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// Plain text (default).
    Text,
    /// An image reference.
    Image,
    /// A file reference.
    File,
}

/// `chat message` (`/` and `/chat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Unsanitised content.
    pub content: String,
    /// Target room; everyone when absent.
    pub room_id: Option<String>,
    /// Message type.
    pub kind: MessageKind,
    /// Sent as a bare string (early form): the delivered message also carries `message`.
    pub early_form: bool,
}

/// Parses `chat message`.
pub fn chat_message(v: &Value) -> Result<ChatMessage> {
    if let Value::String(_) = v {
        return Ok(ChatMessage {
            content: string(v, "content", 1, MAX_CONTENT)?,
            room_id: None,
            kind: MessageKind::Text,
            early_form: true,
        });
    }
    let o = object(v, "chat message")?;
    let kind = match o.get("type") {
        None | Some(Value::Null) => MessageKind::Text,
        Some(Value::String(s)) if s == "text" => MessageKind::Text,
        Some(Value::String(s)) if s == "image" => MessageKind::Image,
        Some(Value::String(s)) if s == "file" => MessageKind::File,
        Some(_) => return Err(invalid("\"type\" must be one of text, image, file")),
    };
    Ok(ChatMessage {
        content: req_str(o, "content", 1, MAX_CONTENT)?,
        room_id: opt_str(o, "roomId", 1, MAX_ROOM_ID)?,
        kind,
        early_form: false,
    })
}

/// `private message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateMessage {
    /// `{ to, content }`: every socket of user `to`.
    ToUser {
        /// Target user id.
        to: String,
        /// Unsanitised content.
        content: String,
    },
    /// Early form `{ targetSocketId, message }`: one socket.
    ToSocket {
        /// Target socket id.
        target_socket_id: String,
        /// Unsanitised content.
        content: String,
    },
}

/// Parses `private message` (both forms).
pub fn private_message(v: &Value) -> Result<PrivateMessage> {
    let o = object(v, "private message")?;
    if o.get("to").is_none_or(Value::is_null) && o.contains_key("targetSocketId") {
        return Ok(PrivateMessage::ToSocket {
            target_socket_id: req_str(o, "targetSocketId", 1, MAX_ID)?,
            content: req_str(o, "message", 1, MAX_CONTENT)?,
        });
    }
    Ok(PrivateMessage::ToUser {
        to: req_str(o, "to", 1, MAX_ID)?,
        content: req_str(o, "content", 1, MAX_CONTENT)?,
    })
}

/// Parses `set username` (a string).
pub fn username(v: &Value) -> Result<String> {
    let name = string(v, "username", 1, MAX_USERNAME)?;
    if name.trim().is_empty() {
        return Err(invalid("\"username\" must not be blank"));
    }
    Ok(name)
}

/// `create room`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRoom {
    /// Room id.
    pub room_id: String,
    /// Display name.
    pub room_name: String,
    /// Unlisted and password protected.
    pub is_private: bool,
    /// Password (present when private).
    pub password: Option<String>,
    /// Capacity.
    pub max_users: u32,
}

/// Parses `create room`.
pub fn create_room(v: &Value) -> Result<CreateRoom> {
    let o = object(v, "create room")?;
    let room_id = room_id_of(o)?;
    let room_name = req_str(o, "roomName", 1, MAX_ROOM_NAME)?;
    let is_private = match o.get("isPrivate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(format!(
                "\"isPrivate\" must be a boolean, got {}",
                type_name(other)
            )));
        }
    };
    let password = opt_str(o, "password", 1, MAX_PASSWORD)?;
    if is_private && password.is_none() {
        return Err(invalid("\"password\" is required for a private room"));
    }
    let max_users =
        opt_int(o, "maxUsers", 1, MAX_ROOM_USERS)?.map_or(DEFAULT_ROOM_USERS, |n| n as u32);
    Ok(CreateRoom {
        room_id,
        room_name,
        is_private,
        password,
        max_users,
    })
}

fn room_id_of(o: &Map<String, Value>) -> Result<String> {
    req_str(o, "roomId", 1, MAX_ROOM_ID)
}

/// `join room`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRoom {
    /// Room id.
    pub room_id: String,
    /// Password for a private room.
    pub password: Option<String>,
}

/// Parses `join room` (`{ roomId, password? }` or a bare room id).
pub fn join_room(v: &Value) -> Result<JoinRoom> {
    if v.is_string() {
        return Ok(JoinRoom {
            room_id: string(v, "roomId", 1, MAX_ROOM_ID)?,
            password: None,
        });
    }
    let o = object(v, "join room")?;
    Ok(JoinRoom {
        room_id: room_id_of(o)?,
        password: opt_str(o, "password", 0, MAX_PASSWORD)?,
    })
}

/// Parses a room id given as a bare string or `{ roomId }` (`leave room`, `get room info`).
pub fn room_id(v: &Value) -> Result<String> {
    string_or_field(v, "roomId", 1, MAX_ROOM_ID)
}

/// `room message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMessage {
    /// Room id.
    pub room_id: String,
    /// Unsanitised message.
    pub message: String,
}

/// Parses `room message`.
pub fn room_message(v: &Value) -> Result<RoomMessage> {
    let o = object(v, "room message")?;
    Ok(RoomMessage {
        room_id: room_id_of(o)?,
        message: req_str(o, "message", 1, MAX_CONTENT)?,
    })
}

/// `room history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomHistory {
    /// Room id.
    pub room_id: String,
    /// Most messages to return.
    pub limit: usize,
}

/// Parses `room history` (`{ roomId, limit? }` or a bare room id).
pub fn room_history(v: &Value) -> Result<RoomHistory> {
    if v.is_string() {
        return Ok(RoomHistory {
            room_id: string(v, "roomId", 1, MAX_ROOM_ID)?,
            limit: DEFAULT_HISTORY,
        });
    }
    let o = object(v, "room history")?;
    Ok(RoomHistory {
        room_id: room_id_of(o)?,
        limit: opt_int(o, "limit", 1, MAX_HISTORY)?.map_or(DEFAULT_HISTORY, |n| n as usize),
    })
}

/// Parses a game id given as a bare string or `{ gameId }` (`join game`, `leave game`).
pub fn game_id(v: &Value) -> Result<String> {
    string_or_field(v, "gameId", 1, MAX_GAME_ID)
}

/// Parses `game action`: an object with a `gameId`; the whole object is the action.
pub fn game_action(v: &Value) -> Result<String> {
    let o = object(v, "game action")?;
    req_str(o, "gameId", 1, MAX_GAME_ID)
}

/// Parses `private message` of `/chat` (`{ to, content }` only).
pub fn chat_private_message(v: &Value) -> Result<(String, String)> {
    let o = object(v, "private message")?;
    Ok((
        req_str(o, "to", 1, MAX_ID)?,
        req_str(o, "content", 1, MAX_CONTENT)?,
    ))
}

/// Parses `broadcast message` of `/admin` (`{ message }` or a bare string).
pub fn broadcast_message(v: &Value) -> Result<String> {
    string_or_field(v, "message", 1, MAX_CONTENT)
}

/// Parses `kick user` (a socket id, or `{ socketId }`).
pub fn kick_target(v: &Value) -> Result<String> {
    string_or_field(v, "socketId", 1, MAX_ID)
}

/// Parses `unban user` (a user id, or `{ userId }`).
pub fn user_id(v: &Value) -> Result<String> {
    string_or_field(v, "userId", 1, MAX_ID)
}

/// `ban user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanUser {
    /// Banned user.
    pub user_id: String,
    /// Reason shown to the user.
    pub reason: Option<String>,
    /// Lifetime; permanent when absent.
    pub duration_secs: Option<u64>,
}

/// Longest ban duration accepted (ten years).
pub const MAX_BAN_SECS: u64 = 10 * 365 * 24 * 3600;

/// Parses `ban user` (`{ userId, reason?, durationSecs? }`, or a bare user id).
pub fn ban_user(v: &Value) -> Result<BanUser> {
    if v.is_string() {
        return Ok(BanUser {
            user_id: string(v, "userId", 1, MAX_ID)?,
            reason: None,
            duration_secs: None,
        });
    }
    let o = object(v, "ban user")?;
    Ok(BanUser {
        user_id: req_str(o, "userId", 1, MAX_ID)?,
        reason: opt_str(o, "reason", 0, MAX_REASON)?.filter(|r| !r.trim().is_empty()),
        duration_secs: opt_int(o, "durationSecs", 1, MAX_BAN_SECS)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn s(n: usize) -> String {
        "x".repeat(n)
    }

    /// `{"gameId":"g","a":[[...[1]...]]}` with the `1` at `level` of the payload.
    fn payload_with_value_at(level: usize) -> Value {
        let mut v = json!(1);
        for _ in 1..level {
            v = json!([v]);
        }
        json!({ "gameId": "g", "a": v })
    }

    #[test]
    fn payloads_the_cluster_can_carry_pass_and_deeper_ones_are_refused() {
        let deepest = payload_with_value_at(MAX_PAYLOAD_DEPTH);
        assert!(payload_fits_cluster(&deepest).is_ok());
        // Wrapped as `game update` wraps it, it is still event data the adapter publishes.
        let update = json!(["game update", { "gameId": "g", "action": deepest, "seq": 1 }]);
        assert!(adapter_redis::json::from_event_json(&update.to_string(), &[]).is_ok());

        let too_deep = payload_with_value_at(MAX_PAYLOAD_DEPTH + 1);
        let err = payload_fits_cluster(&too_deep).unwrap_err();
        assert!(err.0.contains("nested too deeply"), "{err}");
        assert!(payload_fits_cluster(&json!([])).is_ok());
        assert!(payload_fits_cluster(&json!(null)).is_ok());
        let fake = json!({ "gameId": "g", "x": [{ "_placeholder": true, "num": 0 }] });
        let err = payload_fits_cluster(&fake).unwrap_err();
        assert!(err.0.contains("placeholder"), "{err}");
        assert!(payload_fits_cluster(&json!({ "_placeholder": true, "num": 0, "x": 1 })).is_ok());
    }

    #[test]
    fn chat_message_bounds_and_forms() {
        assert!(chat_message(&json!({ "content": s(1) })).is_ok());
        assert!(chat_message(&json!({ "content": s(1000) })).is_ok());
        assert!(chat_message(&json!({ "content": "" })).is_err());
        assert!(chat_message(&json!({ "content": s(1001) })).is_err());
        assert!(chat_message(&json!({ "content": 5 })).is_err());
        assert!(chat_message(&json!({})).is_err());
        assert!(chat_message(&json!(null)).is_err());
        assert!(chat_message(&json!([1])).is_err());
        // Multi-byte characters count once.
        assert!(chat_message(&json!({ "content": "é".repeat(1000) })).is_ok());
        let early = chat_message(&json!("hi")).unwrap();
        assert!(early.early_form);
        assert_eq!(early.content, "hi");
        assert!(chat_message(&json!("")).is_err());
        assert!(chat_message(&json!(s(1001))).is_err());
        let m =
            chat_message(&json!({ "content": "a", "roomId": "r", "type": "image", "extra": 1 }))
                .unwrap();
        assert_eq!(
            (m.room_id.as_deref(), m.kind),
            (Some("r"), MessageKind::Image)
        );
        assert_eq!(
            chat_message(&json!({ "content": "a" })).unwrap().kind,
            MessageKind::Text
        );
        assert!(chat_message(&json!({ "content": "a", "type": "video" })).is_err());
        assert!(chat_message(&json!({ "content": "a", "type": 1 })).is_err());
        assert!(chat_message(&json!({ "content": "a", "roomId": 1 })).is_err());
        assert!(chat_message(&json!({ "content": "a", "roomId": s(51) })).is_err());
        assert!(chat_message(&json!({ "content": "a", "roomId": s(50) })).is_ok());
    }

    #[test]
    fn private_message_forms() {
        assert_eq!(
            private_message(&json!({ "to": "u2", "content": "hi" })).unwrap(),
            PrivateMessage::ToUser {
                to: "u2".into(),
                content: "hi".into()
            }
        );
        assert_eq!(
            private_message(&json!({ "targetSocketId": "abc", "message": "hi" })).unwrap(),
            PrivateMessage::ToSocket {
                target_socket_id: "abc".into(),
                content: "hi".into()
            }
        );
        assert!(private_message(&json!({ "to": "u2", "content": s(1000) })).is_ok());
        assert!(private_message(&json!({ "to": "u2", "content": s(1001) })).is_err());
        assert!(private_message(&json!({ "to": "u2", "content": "" })).is_err());
        assert!(private_message(&json!({ "to": "", "content": "x" })).is_err());
        assert!(private_message(&json!({ "to": 3, "content": "x" })).is_err());
        assert!(private_message(&json!({ "content": "x" })).is_err());
        assert!(private_message(&json!({ "targetSocketId": "a", "message": s(1001) })).is_err());
        assert!(private_message(&json!("hi")).is_err());
    }

    #[test]
    fn username_bounds() {
        assert_eq!(username(&json!("a")).unwrap(), "a");
        assert!(username(&json!(s(32))).is_ok());
        assert!(username(&json!(s(33))).is_err());
        assert!(username(&json!("")).is_err());
        assert!(username(&json!("   ")).is_err());
        assert!(username(&json!(7)).is_err());
        assert!(username(&json!(null)).is_err());
        assert!(username(&json!({ "username": "bob" })).is_err());
    }

    #[test]
    fn create_room_rules() {
        let ok = create_room(&json!({ "roomId": "r", "roomName": "R" })).unwrap();
        assert_eq!(
            (ok.is_private, ok.max_users, ok.password),
            (false, 100, None)
        );
        assert!(create_room(&json!({ "roomId": s(50), "roomName": s(100) })).is_ok());
        assert!(create_room(&json!({ "roomId": s(51), "roomName": "R" })).is_err());
        assert!(create_room(&json!({ "roomId": "", "roomName": "R" })).is_err());
        assert!(create_room(&json!({ "roomId": "r", "roomName": s(101) })).is_err());
        assert!(create_room(&json!({ "roomId": "r", "roomName": "" })).is_err());
        assert!(create_room(&json!({ "roomId": "r" })).is_err());
        assert!(
            create_room(&json!({ "roomId": "r", "roomName": "R", "isPrivate": "yes" })).is_err()
        );
        assert!(
            create_room(&json!({ "roomId": "r", "roomName": "R", "isPrivate": true })).is_err()
        );
        let p = create_room(
            &json!({ "roomId": "r", "roomName": "R", "isPrivate": true, "password": "pw" }),
        )
        .unwrap();
        assert_eq!((p.is_private, p.password.as_deref()), (true, Some("pw")));
        for (n, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
            assert_eq!(
                create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": n })).is_ok(),
                ok,
                "maxUsers {n}"
            );
        }
        assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": 1.5 })).is_err());
        assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": "5" })).is_err());
        assert!(create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": -1 })).is_err());
        assert_eq!(
            create_room(&json!({ "roomId": "r", "roomName": "R", "maxUsers": 5.0 }))
                .unwrap()
                .max_users,
            5
        );
    }

    #[test]
    fn join_leave_history_rules() {
        assert_eq!(join_room(&json!({ "roomId": "r" })).unwrap().password, None);
        assert_eq!(join_room(&json!("r")).unwrap().room_id, "r");
        assert!(join_room(&json!({ "roomId": s(51) })).is_err());
        assert!(join_room(&json!({ "roomId": "r", "password": 1 })).is_err());
        assert_eq!(room_id(&json!("r")).unwrap(), "r");
        assert_eq!(room_id(&json!({ "roomId": "r" })).unwrap(), "r");
        assert!(room_id(&json!(s(51))).is_err());
        assert!(room_id(&json!(null)).is_err());
        assert!(room_id(&json!(1)).is_err());
        assert_eq!(room_history(&json!({ "roomId": "r" })).unwrap().limit, 50);
        for (n, ok) in [(0, false), (1, true), (100, true), (101, false)] {
            assert_eq!(
                room_history(&json!({ "roomId": "r", "limit": n })).is_ok(),
                ok
            );
        }
        assert!(room_message(&json!({ "roomId": "r", "message": s(1000) })).is_ok());
        assert!(room_message(&json!({ "roomId": "r", "message": s(1001) })).is_err());
        assert!(room_message(&json!({ "roomId": "r", "message": "" })).is_err());
        assert!(room_message(&json!({ "roomId": "r" })).is_err());
    }

    #[test]
    fn game_and_admin_rules() {
        assert_eq!(game_id(&json!("g")).unwrap(), "g");
        assert!(game_id(&json!(s(50))).is_ok());
        assert!(game_id(&json!(s(51))).is_err());
        assert!(game_id(&json!("")).is_err());
        assert_eq!(
            game_action(&json!({ "gameId": "g", "move": 1 })).unwrap(),
            "g"
        );
        assert!(game_action(&json!({ "move": 1 })).is_err());
        assert!(game_action(&json!("g")).is_err());
        assert_eq!(broadcast_message(&json!({ "message": "m" })).unwrap(), "m");
        assert!(broadcast_message(&json!({ "message": "" })).is_err());
        assert_eq!(kick_target(&json!("sid")).unwrap(), "sid");
        assert_eq!(user_id(&json!({ "userId": "u" })).unwrap(), "u");
        let b = ban_user(&json!({ "userId": "u", "reason": "r", "durationSecs": 60 })).unwrap();
        assert_eq!(
            (b.reason.as_deref(), b.duration_secs),
            (Some("r"), Some(60))
        );
        assert!(ban_user(&json!({ "userId": "u", "durationSecs": 0 })).is_err());
        assert!(ban_user(&json!({ "userId": "u", "durationSecs": "1" })).is_err());
        assert!(ban_user(&json!({ "reason": "r" })).is_err());
        assert_eq!(ban_user(&json!("u")).unwrap().user_id, "u");
    }

    #[test]
    fn errors_are_readable() {
        assert_eq!(
            chat_message(&json!({ "content": 5 })).unwrap_err().0,
            "\"content\" must be a string, got a number"
        );
        assert_eq!(
            chat_message(&json!({ "content": s(1001) })).unwrap_err().0,
            "\"content\" must be 1 to 1000 characters long"
        );
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::hash_map(
                    prop_oneof![
                        Just("content".to_owned()),
                        Just("roomId".to_owned()),
                        Just("to".to_owned()),
                        Just("maxUsers".to_owned()),
                        Just("limit".to_owned()),
                        Just("durationSecs".to_owned()),
                        Just("type".to_owned()),
                        ".{0,8}".prop_map(|s: String| s),
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(v in arbitrary_json()) {
            let _ = chat_message(&v);
            let _ = private_message(&v);
            let _ = username(&v);
            let _ = create_room(&v);
            let _ = join_room(&v);
            let _ = room_id(&v);
            let _ = room_message(&v);
            let _ = room_history(&v);
            let _ = game_id(&v);
            let _ = game_action(&v);
            let _ = chat_private_message(&v);
            let _ = broadcast_message(&v);
            let _ = kick_target(&v);
            let _ = user_id(&v);
            let _ = ban_user(&v);
        }
    }
}
