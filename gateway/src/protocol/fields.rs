//! The checks every client payload goes through, in one place: lengths counted in characters,
//! integers as a JavaScript client sends them, the nesting and shape the cluster can carry, and
//! the exact refusal texts clients see (docs/protocol.md, section "Errors").
//!
//! The typed payloads built with these checks are in the sibling module `payloads`.

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

pub(super) type Result<T> = std::result::Result<T, Invalid>;

pub(super) fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

pub(super) fn type_name(v: &Value) -> &'static str {
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
pub(super) fn bounded(field: &str, s: &str, min: usize, max: usize) -> Result<()> {
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

pub(super) fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| invalid(format!("{what} must be an object, got {}", type_name(v))))
}

/// A required string field of `min..=max` characters.
pub(super) fn req_str(
    o: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<String> {
    match o.get(field) {
        None | Some(Value::Null) => Err(invalid(format!("\"{field}\" is required"))),
        Some(v) => string(v, field, min, max),
    }
}

/// An optional string field (absent or null is `None`).
pub(super) fn opt_str(
    o: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, field, min, max).map(Some),
    }
}

pub(super) fn string(v: &Value, field: &str, min: usize, max: usize) -> Result<String> {
    let s = v.as_str().ok_or_else(|| {
        invalid(format!(
            "\"{field}\" must be a string, got {}",
            type_name(v)
        ))
    })?;
    bounded(field, s, min, max)?;
    Ok(s.to_owned())
}

pub(super) fn opt_int(
    o: &Map<String, Value>,
    field: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>> {
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
pub(super) fn string_or_field(v: &Value, field: &str, min: usize, max: usize) -> Result<String> {
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
