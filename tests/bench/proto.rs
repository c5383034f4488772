//! Engine.IO v4 / Socket.IO v5 text frames as the load generator writes and reads them, the
//! benchmark's message tag (step, sequence number, send time), and HS256 JWT minting.
//!
//! Only what the benchmark needs: the main namespace `/`, text frames, no binary attachments.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Engine.IO pong answering a server ping (`2`).
pub const PONG: &str = "3";

/// A frame received from the server, classified without parsing JSON bodies.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Engine.IO open packet (`0{...}`).
    Open,
    /// Engine.IO close (`1`).
    Close,
    /// Engine.IO ping (`2`); answer with [`PONG`].
    Ping,
    /// Socket.IO CONNECT ack on `/` (`40{...}`).
    Connected,
    /// Socket.IO CONNECT_ERROR on `/` (`44{"message":...}`), with the message.
    ConnectError(String),
    /// Socket.IO DISCONNECT (`41`).
    Disconnect,
    /// Socket.IO EVENT (`42[...]`) with the event name and the whole frame.
    Event {
        /// The event name (first element of the array).
        name: &'a str,
    },
    /// Socket.IO ACK (`43<id>[...]`) with the ack id and the JSON array text.
    Ack {
        /// The ack id the client chose.
        id: u64,
        /// The JSON array of ack arguments.
        args: &'a str,
    },
    /// Anything else (other namespaces, binary, noop).
    Other,
}

/// Classifies a text frame from the server.
pub fn classify(frame: &str) -> Incoming<'_> {
    let bytes = frame.as_bytes();
    match bytes.first() {
        Some(b'0') => return Incoming::Open,
        Some(b'1') => return Incoming::Close,
        Some(b'2') => return Incoming::Ping,
        Some(b'4') => {}
        _ => return Incoming::Other,
    }
    let body = &frame[1..];
    let Some(kind) = body.as_bytes().first() else {
        return Incoming::Other;
    };
    let rest = &body[1..];
    if rest.starts_with('/') {
        // Another namespace: the benchmark only uses `/`.
        return Incoming::Other;
    }
    match kind {
        b'0' => Incoming::Connected,
        b'1' => Incoming::Disconnect,
        b'4' => {
            let message = serde_json::from_str::<Value>(rest)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| rest.to_owned());
            Incoming::ConnectError(message)
        }
        b'2' => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let array = &rest[digits..];
            match array.strip_prefix("[\"").and_then(|s| s.split_once('"')) {
                Some((name, _)) => Incoming::Event { name },
                None => Incoming::Other,
            }
        }
        b'3' => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            match rest[..digits].parse() {
                Ok(id) => Incoming::Ack {
                    id,
                    args: &rest[digits..],
                },
                Err(_) => Incoming::Other,
            }
        }
        _ => Incoming::Other,
    }
}

/// The CONNECT packet to `/` with `auth: { token }`.
pub fn connect_frame(token: &str) -> String {
    format!("40{}", json!({ "token": token }))
}

/// An EVENT packet to `/`, with an ack id when one is wanted.
pub fn event_frame(event: &str, data: &Value, ack: Option<u64>) -> String {
    let array = Value::Array(vec![Value::String(event.to_owned()), data.clone()]);
    match ack {
        Some(id) => format!("42{id}{array}"),
        None => format!("42{array}"),
    }
}

/// A `room message` EVENT carrying a [`Tag`], built without a JSON tree (publisher hot path).
pub fn room_message_frame(room_id: &str, tag: Tag) -> String {
    format!(
        "42[\"room message\",{{\"roomId\":{},\"message\":\"{}\"}}]",
        Value::String(room_id.to_owned()),
        tag.encode()
    )
}

/// What the publisher writes into each `room message`: which measurement step it belongs to,
/// its sequence number, and the send time in microseconds since the generator's epoch (the one
/// clock every latency is measured against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Measurement step (index into the recorder's per-step counters).
    pub step: u32,
    /// Sequence number within the run.
    pub seq: u64,
    /// Send time, microseconds since the generator's epoch.
    pub sent_us: u64,
}

impl Tag {
    /// `b<step>.<seq>.<sent_us>`: digits and dots only, unchanged by the servers' sanitiser.
    pub fn encode(&self) -> String {
        format!("b{}.{}.{}", self.step, self.seq, self.sent_us)
    }

    /// Parses [`Tag::encode`]'s output.
    pub fn decode(text: &str) -> Option<Tag> {
        let mut parts = text.strip_prefix('b')?.splitn(3, '.');
        let step = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let sent_us = parts.next()?.parse().ok()?;
        Some(Tag { step, seq, sent_us })
    }

    /// Finds the tag in a delivered `room message` frame without parsing its JSON: the value of
    /// the `"message"` key (the event name `"room message"` is never followed by `":`).
    pub fn find_in_frame(frame: &str) -> Option<Tag> {
        const KEY: &str = "\"message\":\"";
        let start = frame.find(KEY)? + KEY.len();
        let rest = &frame[start..];
        let end = rest.find('"')?;
        Tag::decode(&rest[..end])
    }
}

/// Claims of a benchmark user's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<'a> {
    /// `userId`.
    pub user_id: &'a str,
    /// `username`.
    pub username: &'a str,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
}

/// An HS256 JWT for `claims` signed with `secret` (role `user`).
pub fn mint_jwt(secret: &[u8], claims: &Claims<'_>) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        json!({
            "userId": claims.user_id,
            "username": claims.username,
            "role": "user",
            "exp": claims.exp,
        })
        .to_string(),
    );
    let signing_input = format!("{header}.{payload}");
    let signature = hs256_signature(secret, &signing_input);
    format!("{signing_input}.{signature}")
}

/// The base64url HMAC-SHA256 of `signing_input` (`header.payload`).
fn hs256_signature(secret: &[u8], signing_input: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(signing_input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_engine_io_and_socket_io_frames() {
        assert_eq!(classify("0{\"sid\":\"x\"}"), Incoming::Open);
        assert_eq!(classify("2"), Incoming::Ping);
        assert_eq!(classify("1"), Incoming::Close);
        assert_eq!(classify("40{\"sid\":\"abc\"}"), Incoming::Connected);
        assert_eq!(classify("41"), Incoming::Disconnect);
        assert_eq!(
            classify("44{\"message\":\"Authentication error: Invalid token\"}"),
            Incoming::ConnectError("Authentication error: Invalid token".into())
        );
        assert_eq!(
            classify("42[\"welcome\",{\"a\":1}]"),
            Incoming::Event { name: "welcome" }
        );
        assert_eq!(
            classify("4217[\"room message\",{}]"),
            Incoming::Event {
                name: "room message"
            }
        );
        assert_eq!(
            classify("4312[{\"success\":true}]"),
            Incoming::Ack {
                id: 12,
                args: "[{\"success\":true}]"
            }
        );
        assert_eq!(classify("42/chat,[\"x\"]"), Incoming::Other);
        assert_eq!(classify("6"), Incoming::Other);
        assert_eq!(classify(""), Incoming::Other);
    }

    #[test]
    fn encodes_connect_and_event_frames() {
        assert_eq!(connect_frame("t.k.n"), "40{\"token\":\"t.k.n\"}");
        let data = json!({ "roomId": "r1" });
        assert_eq!(
            event_frame("join room", &data, Some(3)),
            "423[\"join room\",{\"roomId\":\"r1\"}]"
        );
        assert_eq!(
            event_frame("join room", &data, None),
            "42[\"join room\",{\"roomId\":\"r1\"}]"
        );
    }

    #[test]
    fn room_message_frame_is_valid_socket_io_json() -> Result<(), serde_json::Error> {
        let tag = Tag {
            step: 2,
            seq: 99,
            sent_us: 123_456,
        };
        let frame = room_message_frame("room \"q\"", tag);
        let array: Value = serde_json::from_str(&frame[2..])?;
        assert_eq!(array[0], "room message");
        assert_eq!(array[1]["roomId"], "room \"q\"");
        assert_eq!(array[1]["message"], "b2.99.123456");
        Ok(())
    }

    #[test]
    fn tag_round_trips_and_is_found_in_delivered_frames() {
        let tag = Tag {
            step: 7,
            seq: 1_000_001,
            sent_us: 9_876_543_210,
        };
        assert_eq!(Tag::decode(&tag.encode()), Some(tag));
        let delivered = format!(
            "42[\"room message\",{{\"from\":\"u1\",\"username\":\"message\",\"message\":\"{}\",\"roomId\":\"r\",\"timestamp\":\"2026-01-01T00:00:00Z\"}}]",
            tag.encode()
        );
        assert_eq!(Tag::find_in_frame(&delivered), Some(tag));
        assert_eq!(Tag::decode("b1.2"), None);
        assert_eq!(Tag::decode("x1.2.3"), None);
        assert_eq!(Tag::find_in_frame("42[\"room message\",{}]"), None);
    }

    #[test]
    fn hs256_signature_matches_the_rfc_style_reference_token() {
        // The widely published HS256 example token (secret `your-256-bit-secret`).
        let input = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ";
        assert_eq!(
            hs256_signature(b"your-256-bit-secret", input),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn minted_jwt_carries_the_claims_and_signs_header_and_payload() {
        let token = mint_jwt(
            b"secret",
            &Claims {
                user_id: "u1",
                username: "alice",
                exp: 2_000_000_000,
            },
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        let payload: Value = match URL_SAFE_NO_PAD.decode(parts[1]) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) => panic!("payload is not base64url: {e}"),
        };
        assert_eq!(payload["userId"], "u1");
        assert_eq!(payload["username"], "alice");
        assert_eq!(payload["role"], "user");
        assert_eq!(payload["exp"], 2_000_000_000u64);
        assert_eq!(
            parts[2],
            hs256_signature(b"secret", &format!("{}.{}", parts[0], parts[1]))
        );
    }
}
