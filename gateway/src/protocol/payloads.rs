//! Typed client payloads with the exact limits of docs/protocol.md (section "Namespaces and
//! events"), used alike by the socket handlers and the HTTP routes (`POST /api/ban` and the
//! `/admin` event `ban user` both go through [`ban_user`]).
//!
//! Every parser takes the event's first argument as JSON (`Value::Null` when the client sent
//! none). Unknown fields are ignored; a missing required field, a wrong type or a length outside
//! the bounds is an [`Invalid`] whose text is shown to the client. Lengths count characters.

use serde_json::{Map, Value};

pub use super::fields::*;
use super::fields::{
    Result, invalid, object, opt_int, opt_str, req_str, string, string_or_field, type_name,
};

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

/// Body of `POST /api/announce`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnounceBody {
    /// Text of the announcement.
    pub message: String,
}

/// Body of `POST /api/emit`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmitBody {
    /// Namespace, `/` when absent.
    pub namespace: Option<String>,
    /// Room of that namespace; the whole namespace when absent.
    pub room: Option<String>,
    /// Event name.
    pub event: String,
    /// Event payload (`null` when absent).
    #[serde(default)]
    pub data: Value,
}

#[cfg(test)]
mod tests;
