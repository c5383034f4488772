//! Responses on `<key>-response#<nsp>#` and `<key>-response#<nsp>#<uid>#`, routed by
//! `requestId`: JSON, except one client's ack to a broadcast with acks (type 9), msgpack.

use serde::Serialize;

use super::request_type as rt;
use super::{WireError, decode_any, scalar_string, string_list, to_json_bytes};
use crate::msgpack::{Wire, to_msgpack};

/// A response on a response channel, routed by `requestId`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Correlation id.
    pub request_id: String,
    /// The responder's uid, when the responder is this adapter (Node peers do not send it).
    pub uid: Option<String>,
    /// The whole decoded message; the waiting request reads the fields it expects.
    pub body: Wire,
}

impl Response {
    /// Decodes a response (JSON if the first byte is `{`, msgpack otherwise).
    pub fn decode(bytes: &[u8]) -> Result<Response, WireError> {
        let body = decode_any(bytes)?;
        let request_id = body
            .get("requestId")
            .and_then(scalar_string)
            .ok_or(WireError::Shape("response without requestId"))?;
        let uid = body.get("uid").and_then(scalar_string);
        Ok(Response {
            request_id,
            uid,
            body,
        })
    }

    /// The `rooms` array of an ALL_ROOMS answer.
    pub fn rooms(&self) -> Vec<String> {
        string_list(self.body.get("rooms"))
    }

    /// The socket ids of a REMOTE_FETCH answer (objects with `id`) or of a legacy SOCKETS
    /// answer (plain strings).
    pub fn socket_ids(&self) -> Vec<String> {
        self.body
            .get("sockets")
            .and_then(Wire::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|s| {
                        scalar_string(s).or_else(|| s.get("id").and_then(scalar_string))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `type` field (6, 8 and 9 carry one).
    pub fn kind(&self) -> Option<i64> {
        self.body.get("type").and_then(Wire::as_i64)
    }

    /// `clientCount` of a BROADCAST_CLIENT_COUNT answer.
    pub fn client_count(&self) -> Option<u64> {
        self.body
            .get("clientCount")
            .and_then(Wire::as_i64)
            .and_then(|n| u64::try_from(n).ok())
    }
}

/// A JSON response: `type` where the answer has one, `requestId`, the fields of the answer,
/// then this adapter's `uid` (an extension Node peers ignore).
#[derive(Serialize)]
struct JsonResponseOut<'a, B: Serialize> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<i64>,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(flatten)]
    body: B,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

fn json_response<B: Serialize>(
    kind: Option<i64>,
    request_id: &str,
    body: B,
    uid: Option<&str>,
) -> Vec<u8> {
    to_json_bytes(&JsonResponseOut {
        kind,
        request_id,
        body,
        uid,
    })
}

#[derive(Serialize)]
struct RoomsBody<'a> {
    rooms: &'a [String],
}

#[derive(Serialize)]
struct SocketsBody<T: Serialize> {
    sockets: T,
}

#[derive(Serialize)]
struct NoFields {}

#[derive(Serialize)]
struct DataBody<'a> {
    data: &'a Wire,
}

#[derive(Serialize)]
struct ClientCountBody {
    #[serde(rename = "clientCount")]
    client_count: i64,
}

/// `{"requestId","rooms":[...]}` (ALL_ROOMS answer).
pub fn rooms_response(request_id: &str, rooms: &[String], uid: Option<&str>) -> Vec<u8> {
    json_response(None, request_id, RoomsBody { rooms }, uid)
}

/// `{"requestId","sockets":[sid...]}` (legacy SOCKETS answer).
pub fn socket_ids_response(request_id: &str, sids: &[String], uid: Option<&str>) -> Vec<u8> {
    json_response(None, request_id, SocketsBody { sockets: sids }, uid)
}

/// `{"requestId"}` (legacy remote join/leave/disconnect answer).
pub fn legacy_ack_response(request_id: &str, uid: Option<&str>) -> Vec<u8> {
    json_response(None, request_id, NoFields {}, uid)
}

/// One socket in a REMOTE_FETCH answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedSocket {
    /// Socket id.
    pub id: String,
    /// Rooms of the socket (Node includes the socket's own id).
    pub rooms: Vec<String>,
    /// `handshake.issued`, epoch milliseconds.
    pub issued_ms: u64,
}

/// One socket as Node's `fetchSockets` answer carries it.
#[derive(Serialize)]
struct FetchedSocketOut<'a> {
    id: &'a str,
    handshake: HandshakeOut,
    rooms: &'a [String],
    data: NoFields,
}

/// The minimal handshake Node consumers dereference.
#[derive(Serialize)]
struct HandshakeOut {
    headers: NoFields,
    time: &'static str,
    address: &'static str,
    xdomain: bool,
    secure: bool,
    issued: i64,
    url: &'static str,
    query: NoFields,
    auth: NoFields,
}

/// `{"requestId","sockets":[{id,handshake,rooms,data}]}` (REMOTE_FETCH answer). The
/// handshake is the minimal object Node consumers dereference; the adapter cannot see the
/// socket's HTTP request.
pub fn fetch_response(request_id: &str, sockets: &[FetchedSocket], uid: Option<&str>) -> Vec<u8> {
    let sockets: Vec<FetchedSocketOut<'_>> = sockets
        .iter()
        .map(|s| FetchedSocketOut {
            id: &s.id,
            handshake: HandshakeOut {
                headers: NoFields {},
                time: "",
                address: "",
                xdomain: false,
                secure: false,
                issued: i64::try_from(s.issued_ms).unwrap_or(0),
                url: "",
                query: NoFields {},
                auth: NoFields {},
            },
            rooms: &s.rooms,
            data: NoFields {},
        })
        .collect();
    json_response(None, request_id, SocketsBody { sockets }, uid)
}

/// `{"type":6,"requestId","data"}` (server-side emit ack).
pub fn server_side_ack_response(request_id: &str, data: &Wire, uid: Option<&str>) -> Vec<u8> {
    json_response(
        Some(rt::SERVER_SIDE_EMIT),
        request_id,
        DataBody { data },
        uid,
    )
}

/// `{"type":8,"requestId","clientCount"}` (JSON; sent even when the count is 0).
pub fn client_count_response(request_id: &str, count: u64, uid: Option<&str>) -> Vec<u8> {
    let client_count = i64::try_from(count).unwrap_or(i64::MAX);
    json_response(
        Some(rt::BROADCAST_CLIENT_COUNT),
        request_id,
        ClientCountBody { client_count },
        uid,
    )
}

/// `{type:9, requestId, packet}` in msgpack: one client's ack (its first argument).
pub fn broadcast_ack_response(request_id: &str, packet: &Wire, uid: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct BroadcastAckOut<'a> {
        #[serde(rename = "type")]
        kind: i64,
        #[serde(rename = "requestId")]
        request_id: &'a str,
        packet: &'a Wire,
        #[serde(skip_serializing_if = "Option::is_none")]
        uid: Option<&'a str>,
    }
    to_msgpack(&BroadcastAckOut {
        kind: rt::BROADCAST_ACK,
        request_id,
        packet,
        uid,
    })
}
