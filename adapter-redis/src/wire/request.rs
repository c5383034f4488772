//! Requests on `<key>-request#<nsp>#`: JSON, except broadcasts with acks (type 7), msgpack.

use serde::Serialize;

use super::request_type as rt;
use super::{
    DisconnectOut, Flags, OptsOut, PacketOut, RoomsChangeOut, Target, WireError, decode_any,
    flags_of, scalar_string, string_list, target_of, to_json_bytes,
};
use crate::msgpack::{Wire, to_msgpack};

/// A request on `<key>-request#<nsp>#`.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Type 0 (legacy): the ids of the sockets in `rooms`.
    Sockets {
        /// Requester.
        uid: Option<String>,
        /// Correlation id.
        request_id: String,
        /// Rooms to list.
        rooms: Vec<String>,
    },
    /// Type 1: every room.
    AllRooms {
        /// Requester.
        uid: Option<String>,
        /// Correlation id.
        request_id: String,
        /// Extension: restrict to the rooms of the selected sockets.
        target: Option<Target>,
    },
    /// Types 2 and 3: selected sockets join or leave rooms.
    JoinLeave {
        /// True for join (type 2), false for leave (type 3).
        join: bool,
        /// Requester (absent from the emitter).
        uid: Option<String>,
        /// Selected sockets.
        target: Target,
        /// Rooms to join or leave.
        rooms: Vec<String>,
    },
    /// Type 4: disconnect selected sockets.
    Disconnect {
        /// Requester.
        uid: Option<String>,
        /// Selected sockets.
        target: Target,
        /// Close the underlying connection too.
        close: bool,
    },
    /// Types 2, 3 and 4 in the pre-v8 form: one socket id, answered by its owner.
    Legacy {
        /// 2, 3 or 4.
        kind: i64,
        /// Correlation id.
        request_id: String,
        /// Socket id.
        sid: String,
        /// Room for join and leave.
        room: Option<String>,
        /// Close flag for disconnect.
        close: bool,
    },
    /// Type 5: the sockets matching the selection.
    Fetch {
        /// Requester.
        uid: Option<String>,
        /// Correlation id.
        request_id: String,
        /// Selection.
        target: Target,
    },
    /// Type 6: a server-side event, with a request id when an ack is wanted.
    ServerSideEmit {
        /// Sender (`emitter` for the emitter).
        uid: Option<String>,
        /// Present when an ack is wanted.
        request_id: Option<String>,
        /// `[event, ...args]`.
        data: Wire,
    },
    /// Type 7: broadcast with acks.
    BroadcastWithAck(AckBroadcast),
}

/// A broadcast with acks (request type 7): what the requester sends and the answering node
/// works from.
#[derive(Debug, Clone, PartialEq)]
pub struct AckBroadcast {
    /// Requester.
    pub uid: Option<String>,
    /// Correlation id.
    pub request_id: String,
    /// `[event, ...args]`.
    pub data: Wire,
    /// Namespace in the packet.
    pub nsp: String,
    /// Selection.
    pub target: Target,
    /// Flags (`timeout` in ms).
    pub flags: Flags,
}

/// A JSON request: `uid` and `requestId` where the request has them, then `type`, then the
/// fields of its kind, in the order Node writes them.
#[derive(Serialize)]
struct JsonRequestOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: i64,
    #[serde(flatten)]
    body: JsonRequestBody<'a>,
}

/// The fields after `type`, by request kind.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonRequestBody<'a> {
    Rooms {
        rooms: &'a [String],
    },
    Opts {
        #[serde(skip_serializing_if = "Option::is_none")]
        opts: Option<OptsOut<'a>>,
    },
    JoinLeave(RoomsChangeOut<'a>),
    Disconnect(DisconnectOut<'a>),
    Legacy {
        sid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        close: Option<bool>,
    },
    Data {
        data: &'a Wire,
    },
}

/// A broadcast with acks (type 7), in msgpack.
#[derive(Serialize)]
struct BroadcastRequestOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(rename = "type")]
    kind: i64,
    packet: PacketOut<'a>,
    opts: OptsOut<'a>,
}

/// A JSON request from its parts.
fn json(
    uid: &Option<String>,
    request_id: Option<&str>,
    kind: i64,
    body: JsonRequestBody,
) -> Vec<u8> {
    to_json_bytes(&JsonRequestOut {
        uid: uid.as_deref(),
        request_id,
        kind,
        body,
    })
}

/// allRooms (selection optional) and fetchSockets: `{opts}` after the request id.
fn selection(
    uid: &Option<String>,
    request_id: &str,
    kind: i64,
    target: Option<&Target>,
) -> Vec<u8> {
    let opts = target.map(|t| OptsOut::new(t, None));
    json(uid, Some(request_id), kind, JsonRequestBody::Opts { opts })
}

impl Request {
    /// Encodes as the Node adapter does: JSON, except type 7 which is msgpack.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Sockets {
                uid,
                request_id,
                rooms,
            } => json(
                uid,
                Some(request_id),
                rt::SOCKETS,
                JsonRequestBody::Rooms { rooms },
            ),
            Request::AllRooms {
                uid,
                request_id,
                target,
            } => selection(uid, request_id, rt::ALL_ROOMS, target.as_ref()),
            Request::JoinLeave {
                join,
                uid,
                target,
                rooms,
            } => json(
                uid,
                None,
                if *join {
                    rt::REMOTE_JOIN
                } else {
                    rt::REMOTE_LEAVE
                },
                JsonRequestBody::JoinLeave(RoomsChangeOut {
                    opts: OptsOut::new(target, None),
                    rooms,
                }),
            ),
            Request::Disconnect { uid, target, close } => json(
                uid,
                None,
                rt::REMOTE_DISCONNECT,
                JsonRequestBody::Disconnect(DisconnectOut {
                    opts: OptsOut::new(target, None),
                    close: *close,
                }),
            ),
            Request::Legacy {
                kind,
                request_id,
                sid,
                room,
                close,
            } => json(
                &None,
                Some(request_id),
                *kind,
                JsonRequestBody::Legacy {
                    sid,
                    room: room.as_deref(),
                    close: room.is_none().then_some(*close),
                },
            ),
            Request::Fetch {
                uid,
                request_id,
                target,
            } => selection(uid, request_id, rt::REMOTE_FETCH, Some(target)),
            Request::ServerSideEmit {
                uid,
                request_id,
                data,
            } => json(
                uid,
                request_id.as_deref(),
                rt::SERVER_SIDE_EMIT,
                JsonRequestBody::Data { data },
            ),
            Request::BroadcastWithAck(request) => to_msgpack(&BroadcastRequestOut {
                uid: request.uid.as_deref(),
                request_id: &request.request_id,
                kind: rt::BROADCAST,
                packet: PacketOut::event(&request.data, &request.nsp),
                opts: OptsOut::new(&request.target, Some(request.flags.into())),
            }),
        }
    }

    /// Decodes a request (JSON if the first byte is `{`, msgpack otherwise).
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        let wire = decode_any(bytes)?;
        let uid = wire.get("uid").and_then(scalar_string);
        let request_id = wire.get("requestId").and_then(scalar_string);
        let kind = wire
            .get("type")
            .and_then(Wire::as_i64)
            .ok_or(WireError::Shape("request without a numeric type"))?;
        let need_id = || {
            request_id
                .clone()
                .ok_or(WireError::Shape("request without requestId"))
        };
        let target = || wire.get("opts").map(target_of).unwrap_or_default();
        Ok(match kind {
            rt::SOCKETS => Request::Sockets {
                uid,
                request_id: need_id()?,
                rooms: string_list(wire.get("rooms")),
            },
            rt::ALL_ROOMS => Request::AllRooms {
                uid,
                request_id: need_id()?,
                target: wire.get("opts").map(target_of),
            },
            rt::REMOTE_JOIN | rt::REMOTE_LEAVE | rt::REMOTE_DISCONNECT
                if wire.get("opts").is_none() && wire.get("sid").is_some() =>
            {
                Request::Legacy {
                    kind,
                    request_id: need_id()?,
                    sid: wire.get("sid").and_then(scalar_string).unwrap_or_default(),
                    room: wire.get("room").and_then(scalar_string),
                    close: wire.get("close") == Some(&Wire::Bool(true)),
                }
            }
            rt::REMOTE_JOIN | rt::REMOTE_LEAVE => Request::JoinLeave {
                join: kind == rt::REMOTE_JOIN,
                uid,
                target: target(),
                rooms: string_list(wire.get("rooms")),
            },
            rt::REMOTE_DISCONNECT => Request::Disconnect {
                uid,
                target: target(),
                close: wire.get("close") == Some(&Wire::Bool(true)),
            },
            rt::REMOTE_FETCH => Request::Fetch {
                uid,
                request_id: need_id()?,
                target: target(),
            },
            rt::SERVER_SIDE_EMIT => Request::ServerSideEmit {
                uid,
                request_id,
                data: wire
                    .get("data")
                    .filter(|d| d.as_array().is_some_and(|a| !a.is_empty()))
                    .ok_or(WireError::Shape("server-side emit without data"))?
                    .clone(),
            },
            rt::BROADCAST => {
                let packet = wire
                    .get("packet")
                    .ok_or(WireError::Shape("broadcast request without packet"))?;
                Request::BroadcastWithAck(AckBroadcast {
                    uid,
                    request_id: need_id()?,
                    data: packet
                        .get("data")
                        .filter(|d| d.as_array().is_some_and(|a| !a.is_empty()))
                        .ok_or(WireError::Shape("broadcast request without data"))?
                        .clone(),
                    nsp: packet
                        .get("nsp")
                        .and_then(Wire::as_str)
                        .unwrap_or("/")
                        .to_owned(),
                    target: target(),
                    flags: wire.get("opts").map(flags_of).unwrap_or_default(),
                })
            }
            _ => return Err(WireError::Shape("unknown request type")),
        })
    }
}
