//! The messages of `@socket.io/redis-adapter` 8.x (classic protocol), encoded and decoded.
//!
//! * Broadcasts: msgpack `[uid, {type:2, data, nsp}, {rooms, except, flags}]`.
//! * Requests and responses: JSON, except BROADCAST (type 7) requests and BROADCAST_ACK
//!   (type 9) responses, which are msgpack. Decoders look at the first byte: `{` is JSON.
//!
//! Extensions that Node peers ignore: responses from this adapter carry a `uid` field (so
//! requesters can de-duplicate per peer), and ALL_ROOMS requests may carry `opts` (Node peers
//! answer with all their rooms; this adapter answers with the rooms of the selected sockets).

use bytes::Bytes;

use crate::json;
use crate::msgpack::{DecodeError, MAX_DEPTH, Wire};

/// Levels a message puts above the event data it carries: the message (array or map), then
/// its `packet` map.
pub const ENVELOPE_DEPTH: usize = 2;

/// Deepest level (the event array `["name", args...]` is level 0) at which a value of event
/// data may sit and still be decoded by every peer. The one limit shared by the encoder
/// ([`json::from_event_json`]) and the decoder ([`MAX_DEPTH`] with the envelope), and what a
/// server must check client payloads against before it accepts them.
pub const MAX_EVENT_DATA_DEPTH: usize = MAX_DEPTH - ENVELOPE_DEPTH;

/// Request types of the classic protocol (the numbers are on the wire).
pub mod request_type {
    /// Legacy `sockets(rooms)`.
    pub const SOCKETS: i64 = 0;
    /// `allRooms()`.
    pub const ALL_ROOMS: i64 = 1;
    /// `socketsJoin`.
    pub const REMOTE_JOIN: i64 = 2;
    /// `socketsLeave`.
    pub const REMOTE_LEAVE: i64 = 3;
    /// `disconnectSockets`.
    pub const REMOTE_DISCONNECT: i64 = 4;
    /// `fetchSockets`.
    pub const REMOTE_FETCH: i64 = 5;
    /// `serverSideEmit`.
    pub const SERVER_SIDE_EMIT: i64 = 6;
    /// Broadcast with acks.
    pub const BROADCAST: i64 = 7;
    /// Client count answer to a broadcast with acks.
    pub const BROADCAST_CLIENT_COUNT: i64 = 8;
    /// One client ack answer to a broadcast with acks.
    pub const BROADCAST_ACK: i64 = 9;
}
use request_type as rt;

/// Why a message from Redis was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Not valid msgpack.
    #[error("invalid msgpack: {0}")]
    Msgpack(#[from] DecodeError),
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid encoding, but not the expected shape.
    #[error("unexpected message shape: {0}")]
    Shape(&'static str),
}

/// Which sockets a message is for: the union of `rooms` (all sockets if empty) minus every
/// socket in any `except` room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Rooms to reach; empty means the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms whose sockets are excluded.
    pub except: Vec<String>,
}

/// Broadcast flags this adapter understands (others are ignored when decoding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Drop the packet for clients that cannot take it right now.
    pub volatile: bool,
    /// Ack timeout in milliseconds (broadcast with acks only).
    pub timeout_ms: Option<u64>,
}

/// A decoded broadcast message.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The sender's uid (`emitter` for `@socket.io/redis-emitter`).
    pub uid: String,
    /// `[event, ...args]`.
    pub data: Wire,
    /// The namespace in the packet (`/` when absent).
    pub nsp: String,
    /// The selection.
    pub target: Target,
    /// The flags.
    pub flags: Flags,
}

fn strings(items: &[String]) -> Wire {
    Wire::Array(items.iter().map(|s| Wire::Str(s.clone())).collect())
}

fn packet_wire(data: &Wire, nsp: &str) -> Wire {
    Wire::map([
        ("type", Wire::Int(2)),
        ("data", data.clone()),
        ("nsp", Wire::Str(nsp.to_owned())),
    ])
}

fn flags_wire(flags: Flags) -> Wire {
    let mut entries = Vec::new();
    if flags.volatile {
        entries.push((Wire::Str("volatile".into()), Wire::Bool(true)));
    }
    if let Some(ms) = flags.timeout_ms {
        entries.push((
            Wire::Str("timeout".into()),
            Wire::Int(i64::try_from(ms).unwrap_or(i64::MAX)),
        ));
    }
    Wire::Map(entries)
}

fn opts_wire(target: &Target, flags: Option<Flags>) -> Wire {
    let mut entries = vec![
        (Wire::Str("rooms".into()), strings(&target.rooms)),
        (Wire::Str("except".into()), strings(&target.except)),
    ];
    if let Some(flags) = flags {
        entries.push((Wire::Str("flags".into()), flags_wire(flags)));
    }
    Wire::Map(entries)
}

/// Encodes a broadcast as the Node adapter does: `[uid, packet, opts]` in msgpack.
pub fn encode_broadcast(
    uid: &str,
    data: &Wire,
    nsp: &str,
    target: &Target,
    flags: Flags,
) -> Vec<u8> {
    Wire::Array(vec![
        Wire::Str(uid.to_owned()),
        packet_wire(data, nsp),
        opts_wire(target, Some(flags)),
    ])
    .encode()
}

/// Decodes a broadcast message (msgpack only, as on Node's broadcast channels).
pub fn decode_broadcast(bytes: &[u8]) -> Result<BroadcastMessage, WireError> {
    let wire = Wire::decode(bytes)?;
    let items = wire
        .as_array()
        .ok_or(WireError::Shape("broadcast is not an array"))?;
    let [uid, packet, rest @ ..] = items else {
        return Err(WireError::Shape("broadcast array too short"));
    };
    let uid = scalar_string(uid).unwrap_or_default();
    let data = packet
        .get("data")
        .filter(|d| d.as_array().is_some_and(|a| !a.is_empty()))
        .ok_or(WireError::Shape("broadcast packet without data"))?
        .clone();
    let nsp = packet
        .get("nsp")
        .and_then(Wire::as_str)
        .unwrap_or("/")
        .to_owned();
    let opts = rest.first();
    Ok(BroadcastMessage {
        uid,
        data,
        nsp,
        target: opts.map(target_of).unwrap_or_default(),
        flags: opts.map(flags_of).unwrap_or_default(),
    })
}

/// A room or uid as JavaScript's `String(x)` would give it (numbers are valid rooms in Node).
pub fn scalar_string(value: &Wire) -> Option<String> {
    match value {
        Wire::Str(s) => Some(s.clone()),
        Wire::Int(i) => Some(i.to_string()),
        Wire::UInt(u) => Some(u.to_string()),
        Wire::F64(f) => Some(json::js_number(*f)),
        _ => None,
    }
}

fn string_list(value: Option<&Wire>) -> Vec<String> {
    let mut out: Vec<String> = value
        .and_then(Wire::as_array)
        .map(|items| items.iter().filter_map(scalar_string).collect())
        .unwrap_or_default();
    out.dedup();
    out
}

fn target_of(opts: &Wire) -> Target {
    Target {
        rooms: string_list(opts.get("rooms")),
        except: string_list(opts.get("except")),
    }
}

fn flags_of(opts: &Wire) -> Flags {
    let flags = opts.get("flags");
    Flags {
        volatile: flags.and_then(|f| f.get("volatile")) == Some(&Wire::Bool(true)),
        timeout_ms: flags
            .and_then(|f| f.get("timeout"))
            .and_then(Wire::as_i64)
            .and_then(|t| u64::try_from(t).ok()),
    }
}

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
    BroadcastWithAck {
        /// Requester.
        uid: Option<String>,
        /// Correlation id.
        request_id: String,
        /// `[event, ...args]`.
        data: Wire,
        /// Namespace in the packet.
        nsp: String,
        /// Selection.
        target: Target,
        /// Flags (`timeout` in ms).
        flags: Flags,
    },
}

/// The fields every request starts with, in the order Node writes them: `uid` and `requestId`
/// where the request has them, then `type`.
fn push_head(
    entries: &mut Vec<(Wire, Wire)>,
    uid: &Option<String>,
    request_id: Option<&String>,
    kind: i64,
) {
    if let Some(uid) = uid {
        entries.push(entry("uid", Wire::Str(uid.clone())));
    }
    if let Some(id) = request_id {
        entries.push(entry("requestId", Wire::Str(id.clone())));
    }
    entries.push(entry("type", Wire::Int(kind)));
}

fn entry(key: &str, value: Wire) -> (Wire, Wire) {
    (Wire::Str(key.into()), value)
}

impl Request {
    /// Encodes as the Node adapter does: JSON, except type 7 which is msgpack.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Vec::new();
        match self {
            Request::Sockets {
                uid,
                request_id,
                rooms,
            } => {
                push_head(&mut e, uid, Some(request_id), rt::SOCKETS);
                e.push(entry("rooms", strings(rooms)));
            }
            Request::AllRooms {
                uid,
                request_id,
                target,
            } => {
                push_head(&mut e, uid, Some(request_id), rt::ALL_ROOMS);
                if let Some(target) = target {
                    e.push(entry("opts", opts_wire(target, None)));
                }
            }
            Request::JoinLeave {
                join,
                uid,
                target,
                rooms,
            } => {
                let kind = if *join {
                    rt::REMOTE_JOIN
                } else {
                    rt::REMOTE_LEAVE
                };
                push_head(&mut e, uid, None, kind);
                e.push(entry("opts", opts_wire(target, None)));
                e.push(entry("rooms", strings(rooms)));
            }
            Request::Disconnect { uid, target, close } => {
                push_head(&mut e, uid, None, rt::REMOTE_DISCONNECT);
                e.push(entry("opts", opts_wire(target, None)));
                e.push(entry("close", Wire::Bool(*close)));
            }
            Request::Legacy {
                kind,
                request_id,
                sid,
                room,
                close,
            } => {
                push_head(&mut e, &None, Some(request_id), *kind);
                e.push(entry("sid", Wire::Str(sid.clone())));
                match room {
                    Some(room) => e.push(entry("room", Wire::Str(room.clone()))),
                    None => e.push(entry("close", Wire::Bool(*close))),
                }
            }
            Request::Fetch {
                uid,
                request_id,
                target,
            } => {
                push_head(&mut e, uid, Some(request_id), rt::REMOTE_FETCH);
                e.push(entry("opts", opts_wire(target, None)));
            }
            Request::ServerSideEmit {
                uid,
                request_id,
                data,
            } => {
                push_head(&mut e, uid, request_id.as_ref(), rt::SERVER_SIDE_EMIT);
                e.push(entry("data", data.clone()));
            }
            Request::BroadcastWithAck {
                uid,
                request_id,
                data,
                nsp,
                target,
                flags,
            } => {
                push_head(&mut e, uid, Some(request_id), rt::BROADCAST);
                e.push(entry("packet", packet_wire(data, nsp)));
                e.push(entry("opts", opts_wire(target, Some(*flags))));
                return Wire::Map(e).encode();
            }
        }
        json::to_json(&Wire::Map(e), &mut Vec::new()).into_bytes()
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
                Request::BroadcastWithAck {
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
                }
            }
            _ => return Err(WireError::Shape("unknown request type")),
        })
    }
}

/// Decodes JSON (first byte `{`) or msgpack into a [`Wire`] value.
pub fn decode_any(bytes: &[u8]) -> Result<Wire, WireError> {
    if bytes.first() == Some(&b'{') {
        let text = std::str::from_utf8(bytes).map_err(|e| WireError::Json(e.to_string()))?;
        json::from_json(text, &[]).map_err(|e| WireError::Json(e.to_string()))
    } else {
        Ok(Wire::decode(bytes)?)
    }
}

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

fn json_response(entries: Vec<(Wire, Wire)>, uid: Option<&str>) -> Vec<u8> {
    let mut entries = entries;
    if let Some(uid) = uid {
        entries.push(entry("uid", Wire::Str(uid.to_owned())));
    }
    json::to_json(&Wire::Map(entries), &mut Vec::new()).into_bytes()
}

/// `{"requestId","rooms":[...]}` (ALL_ROOMS answer).
pub fn rooms_response(request_id: &str, rooms: &[String], uid: Option<&str>) -> Vec<u8> {
    json_response(
        vec![
            entry("requestId", Wire::Str(request_id.into())),
            entry("rooms", strings(rooms)),
        ],
        uid,
    )
}

/// `{"requestId","sockets":[sid...]}` (legacy SOCKETS answer).
pub fn socket_ids_response(request_id: &str, sids: &[String], uid: Option<&str>) -> Vec<u8> {
    json_response(
        vec![
            entry("requestId", Wire::Str(request_id.into())),
            entry("sockets", strings(sids)),
        ],
        uid,
    )
}

/// `{"requestId"}` (legacy remote join/leave/disconnect answer).
pub fn legacy_ack_response(request_id: &str, uid: Option<&str>) -> Vec<u8> {
    json_response(vec![entry("requestId", Wire::Str(request_id.into()))], uid)
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

/// `{"requestId","sockets":[{id,handshake,rooms,data}]}` (REMOTE_FETCH answer). The
/// handshake is the minimal object Node consumers dereference; the adapter cannot see the
/// socket's HTTP request.
pub fn fetch_response(request_id: &str, sockets: &[FetchedSocket], uid: Option<&str>) -> Vec<u8> {
    let sockets = sockets
        .iter()
        .map(|s| {
            Wire::map([
                ("id", Wire::Str(s.id.clone())),
                (
                    "handshake",
                    Wire::map([
                        ("headers", Wire::Map(vec![])),
                        ("time", Wire::Str(String::new())),
                        ("address", Wire::Str(String::new())),
                        ("xdomain", Wire::Bool(false)),
                        ("secure", Wire::Bool(false)),
                        ("issued", Wire::Int(i64::try_from(s.issued_ms).unwrap_or(0))),
                        ("url", Wire::Str(String::new())),
                        ("query", Wire::Map(vec![])),
                        ("auth", Wire::Map(vec![])),
                    ]),
                ),
                ("rooms", strings(&s.rooms)),
                ("data", Wire::Map(vec![])),
            ])
        })
        .collect();
    json_response(
        vec![
            entry("requestId", Wire::Str(request_id.into())),
            entry("sockets", Wire::Array(sockets)),
        ],
        uid,
    )
}

/// `{"type":6,"requestId","data"}` (server-side emit ack).
pub fn server_side_ack_response(request_id: &str, data: &Wire, uid: Option<&str>) -> Vec<u8> {
    json_response(
        vec![
            entry("type", Wire::Int(rt::SERVER_SIDE_EMIT)),
            entry("requestId", Wire::Str(request_id.into())),
            entry("data", data.clone()),
        ],
        uid,
    )
}

/// `{"type":8,"requestId","clientCount"}` (JSON; sent even when the count is 0).
pub fn client_count_response(request_id: &str, count: u64, uid: Option<&str>) -> Vec<u8> {
    json_response(
        vec![
            entry("type", Wire::Int(rt::BROADCAST_CLIENT_COUNT)),
            entry("requestId", Wire::Str(request_id.into())),
            entry(
                "clientCount",
                Wire::Int(i64::try_from(count).unwrap_or(i64::MAX)),
            ),
        ],
        uid,
    )
}

/// `{type:9, requestId, packet}` in msgpack: one client's ack (its first argument).
pub fn broadcast_ack_response(request_id: &str, packet: &Wire, uid: Option<&str>) -> Vec<u8> {
    let mut entries = vec![
        entry("type", Wire::Int(rt::BROADCAST_ACK)),
        entry("requestId", Wire::Str(request_id.into())),
        entry("packet", packet.clone()),
    ];
    if let Some(uid) = uid {
        entries.push(entry("uid", Wire::Str(uid.to_owned())));
    }
    Wire::Map(entries).encode()
}

/// Data for JSON messages that cannot carry binaries: a `Bin` would be lost, so reject.
pub fn contains_binary(value: &Wire) -> bool {
    match value {
        Wire::Bin(_) | Wire::Ext(..) => true,
        Wire::Array(items) => items.iter().any(contains_binary),
        Wire::Map(entries) => entries
            .iter()
            .any(|(k, v)| contains_binary(k) || contains_binary(v)),
        _ => false,
    }
}

/// Convenience for tests and benches: the bytes of a `Bytes` as a slice.
pub fn as_slice(bytes: &Bytes) -> &[u8] {
    bytes.as_ref()
}
