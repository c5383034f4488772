//! The messages of the sharded wire as typed values: what this adapter sends is built from
//! them, and what peers send is read into them field by field (`envelope.rs`).

use crate::msgpack::Wire;
use crate::wire::{FetchedSocket, Flags, Target};

/// The message types of the sharded wire (`docs/sharded-adapter.md`, section 2.3). Types 1,
/// 2 and 13 (heartbeats, close) belong to another cluster adapter: the sharded one never sends
/// them.
pub mod message_type {
    /// A broadcast, with a `requestId` when acks are wanted.
    pub const BROADCAST: i64 = 3;
    /// `socketsJoin`.
    pub const SOCKETS_JOIN: i64 = 4;
    /// `socketsLeave`.
    pub const SOCKETS_LEAVE: i64 = 5;
    /// `disconnectSockets`.
    pub const DISCONNECT_SOCKETS: i64 = 6;
    /// `fetchSockets`.
    pub const FETCH_SOCKETS: i64 = 7;
    /// One server's answer to `fetchSockets`.
    pub const FETCH_SOCKETS_RESPONSE: i64 = 8;
    /// `serverSideEmit`, with a `requestId` when an answer is wanted.
    pub const SERVER_SIDE_EMIT: i64 = 9;
    /// One server's answer to `serverSideEmitWithAck`.
    pub const SERVER_SIDE_EMIT_RESPONSE: i64 = 10;
    /// How many clients one server expects acks from, for a broadcast with acks.
    pub const BROADCAST_CLIENT_COUNT: i64 = 11;
    /// One client's ack to a broadcast with acks.
    pub const BROADCAST_ACK: i64 = 12;
}

/// `{type, data, uid, nsp}`: every message of the sharded wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The sender's uid (16 hex characters from Node; empty when a peer left it out, which
    /// matches no server).
    pub uid: String,
    /// The namespace of the sender's adapter (empty when a peer left it out, which matches no
    /// namespace).
    pub nsp: String,
    /// `type` and `data`.
    pub message: Message,
}

/// `opts`: the sockets a message is for, and the broadcast flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    /// `rooms` and `except`.
    pub target: Target,
    /// `flags`.
    pub flags: BroadcastFlags,
}

impl Opts {
    /// The selection `target`, without flags (as joins, leaves, disconnects and fetches send
    /// it: `flags: {}`).
    pub fn of(target: Target) -> Self {
        Self {
            target,
            flags: BroadcastFlags::default(),
        }
    }
}

/// `opts.flags` as socket.io's `BroadcastOperator` sets them. `local` never travels (a local
/// broadcast publishes nothing); other keys a peer may add are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// `volatile: true`.
    pub volatile: bool,
    /// `compress: <bool>` when the caller set it (Node sends `compress: false` as given).
    pub compress: Option<bool>,
    /// `timeout: <ms>`, for broadcasts with acks and `io.timeout(ms).fetchSockets()`.
    pub timeout_ms: Option<u64>,
}

impl BroadcastFlags {
    /// The flags the classic wire and the local delivery understand.
    pub fn flags(&self) -> Flags {
        Flags {
            volatile: self.volatile,
            timeout_ms: self.timeout_ms,
        }
    }
}

impl From<Flags> for BroadcastFlags {
    fn from(flags: Flags) -> Self {
        Self {
            volatile: flags.volatile,
            compress: None,
            timeout_ms: flags.timeout_ms,
        }
    }
}

/// One socket of a `fetchSockets` answer, as Node sends it: the handshake and `socket.data`
/// are kept as they came (Node peers send the whole handshake; this adapter a minimal one).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: String,
    /// `handshake` (absent only if a peer left it out).
    pub handshake: Option<Wire>,
    /// The socket's rooms (Node lists the socket's own id first).
    pub rooms: Vec<String>,
    /// `socket.data` (absent when it was `undefined` on a Node server).
    pub data: Option<Wire>,
}

impl RemoteSocket {
    /// A local socket as this adapter describes it: the minimal handshake Node consumers
    /// dereference (the adapter cannot see the socket's HTTP request) and `data: {}`, as the
    /// classic wire sends it.
    pub fn from_fetched(socket: &FetchedSocket) -> Self {
        let empty = || Wire::Map(Vec::new());
        let text = |s: &str| Wire::Str(s.to_owned());
        Self {
            id: socket.id.clone(),
            handshake: Some(Wire::map([
                ("headers", empty()),
                ("time", text("")),
                ("address", text("")),
                ("xdomain", Wire::Bool(false)),
                ("secure", Wire::Bool(false)),
                (
                    "issued",
                    Wire::Int(i64::try_from(socket.issued_ms).unwrap_or(0)),
                ),
                ("url", text("")),
                ("query", empty()),
                ("auth", empty()),
            ])),
            rooms: socket.rooms.clone(),
            data: Some(empty()),
        }
    }

    /// What the adapter keeps of a remote socket: id, rooms and `handshake.issued`.
    pub fn to_fetched(&self) -> FetchedSocket {
        let issued_ms = self
            .handshake
            .as_ref()
            .and_then(|h| h.get("issued"))
            .and_then(Wire::as_i64)
            .and_then(|ms| u64::try_from(ms).ok())
            .unwrap_or(0);
        FetchedSocket {
            id: self.id.clone(),
            rooms: self.rooms.clone(),
            issued_ms,
        }
    }
}

/// `type` and `data` of one message, for types 3 to 12.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Type 3: `{packet: {type: 2, data}, [requestId], opts}`.
    Broadcast {
        /// `[event, ...args]`.
        data: Wire,
        /// Present for a broadcast with acks (answered by types 11 and 12).
        request_id: Option<String>,
        /// Selection and flags.
        opts: Opts,
    },
    /// Type 4: `{opts, rooms}`.
    SocketsJoin {
        /// Selected sockets.
        opts: Opts,
        /// Rooms they join.
        rooms: Vec<String>,
    },
    /// Type 5: `{opts, rooms}`.
    SocketsLeave {
        /// Selected sockets.
        opts: Opts,
        /// Rooms they leave.
        rooms: Vec<String>,
    },
    /// Type 6: `{opts, close}`.
    DisconnectSockets {
        /// Selected sockets.
        opts: Opts,
        /// Close the underlying connection too.
        close: bool,
    },
    /// Type 7: `{opts, requestId}`.
    FetchSockets {
        /// Selected sockets.
        opts: Opts,
        /// Correlation id.
        request_id: String,
    },
    /// Type 8: `{requestId, sockets}`.
    FetchSocketsResponse {
        /// Correlation id.
        request_id: String,
        /// The answering server's selected sockets.
        sockets: Vec<RemoteSocket>,
    },
    /// Type 9: `{[requestId], packet}`.
    ServerSideEmit {
        /// `[event, ...args]`.
        data: Wire,
        /// Present when an answer is wanted (type 10).
        request_id: Option<String>,
    },
    /// Type 10: `{requestId, packet}`.
    ServerSideEmitResponse {
        /// Correlation id.
        request_id: String,
        /// The first argument of the listener's ack (absent when it was `undefined`).
        packet: Option<Wire>,
    },
    /// Type 11: `{requestId, clientCount}`.
    BroadcastClientCount {
        /// Correlation id.
        request_id: String,
        /// Clients the answering server expects acks from (sent even when 0).
        client_count: u64,
    },
    /// Type 12: `{requestId, packet}`.
    BroadcastAck {
        /// Correlation id.
        request_id: String,
        /// The first argument of the client's ack (absent when it was `undefined`).
        packet: Option<Wire>,
    },
}

impl Message {
    /// The `type` on the wire.
    pub fn kind(&self) -> i64 {
        use message_type as t;
        match self {
            Message::Broadcast { .. } => t::BROADCAST,
            Message::SocketsJoin { .. } => t::SOCKETS_JOIN,
            Message::SocketsLeave { .. } => t::SOCKETS_LEAVE,
            Message::DisconnectSockets { .. } => t::DISCONNECT_SOCKETS,
            Message::FetchSockets { .. } => t::FETCH_SOCKETS,
            Message::FetchSocketsResponse { .. } => t::FETCH_SOCKETS_RESPONSE,
            Message::ServerSideEmit { .. } => t::SERVER_SIDE_EMIT,
            Message::ServerSideEmitResponse { .. } => t::SERVER_SIDE_EMIT_RESPONSE,
            Message::BroadcastClientCount { .. } => t::BROADCAST_CLIENT_COUNT,
            Message::BroadcastAck { .. } => t::BROADCAST_ACK,
        }
    }

    /// The `requestId`, for the messages that carry one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Message::Broadcast { request_id, .. } | Message::ServerSideEmit { request_id, .. } => {
                request_id.as_deref()
            }
            Message::FetchSockets { request_id, .. }
            | Message::FetchSocketsResponse { request_id, .. }
            | Message::ServerSideEmitResponse { request_id, .. }
            | Message::BroadcastClientCount { request_id, .. }
            | Message::BroadcastAck { request_id, .. } => Some(request_id),
            Message::SocketsJoin { .. }
            | Message::SocketsLeave { .. }
            | Message::DisconnectSockets { .. } => None,
        }
    }

    /// Whether this is an answer to a request (types 8, 10, 11 and 12), which goes to the
    /// requester's response channel.
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            Message::FetchSocketsResponse { .. }
                | Message::ServerSideEmitResponse { .. }
                | Message::BroadcastClientCount { .. }
                | Message::BroadcastAck { .. }
        )
    }
}
