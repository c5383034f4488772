//! The sharded wire mapped onto the kinds the adapter already handles for the classic wire
//! (`wire::BroadcastMessage`, `wire::Request`, `wire::Response`), both ways, so one set of
//! local actions (`adapter/requests_in.rs`, `adapter/inbound.rs`, the request bookkeeping)
//! serves both modes. Free functions: the transport calls them; nothing here publishes.

use super::message::{Envelope, Message, Opts, RemoteSocket};
use crate::msgpack::Wire;
use crate::wire::{
    AckBroadcast, BroadcastMessage, FetchedSocket, Flags, Request, Response, Target, request_type,
};

/// A sharded message as the classic wire's kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassicForm {
    /// Type 3 without `requestId`: delivered like a classic broadcast.
    Broadcast(BroadcastMessage),
    /// Types 3 with `requestId`, 4, 5, 6, 7 and 9: handled like the classic requests.
    Request(Request),
    /// Types 8, 10, 11 and 12: handed to the waiting request by `requestId`, with `body`
    /// shaped as the classic answer of that kind so the same readers work
    /// ([`Response::socket_ids`], [`Response::client_count`], `data`, `packet`).
    Response(Response),
}

/// A classic request kind that the sharded wire does not have (`sockets`, `allRooms` and the
/// pre-v8 single-socket forms: `docs/sharded-adapter.md`, section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("classic request type {0} has no sharded equivalent")]
pub struct NotInShardedWire(pub i64);

impl Envelope {
    /// This message as the classic wire's kinds. The sender's uid goes where the classic
    /// kinds keep it (sharded answers always carry it, so answers are de-duplicated per
    /// responder for Node peers too); the namespace is the envelope's.
    pub fn into_classic(self) -> ClassicForm {
        let Envelope { uid, nsp, message } = self;
        let request = |request| ClassicForm::Request(request);
        match message {
            Message::Broadcast {
                data,
                request_id: None,
                opts,
            } => ClassicForm::Broadcast(BroadcastMessage {
                uid,
                data,
                nsp,
                flags: opts.flags.flags(),
                target: opts.target,
            }),
            Message::Broadcast {
                data,
                request_id: Some(request_id),
                opts,
            } => request(Request::BroadcastWithAck(AckBroadcast {
                uid: Some(uid),
                request_id,
                data,
                nsp,
                flags: opts.flags.flags(),
                target: opts.target,
            })),
            Message::SocketsJoin { opts, rooms } => request(Request::JoinLeave {
                join: true,
                uid: Some(uid),
                target: opts.target,
                rooms,
            }),
            Message::SocketsLeave { opts, rooms } => request(Request::JoinLeave {
                join: false,
                uid: Some(uid),
                target: opts.target,
                rooms,
            }),
            Message::DisconnectSockets { opts, close } => request(Request::Disconnect {
                uid: Some(uid),
                target: opts.target,
                close,
            }),
            Message::FetchSockets { opts, request_id } => request(Request::Fetch {
                uid: Some(uid),
                request_id,
                target: opts.target,
            }),
            Message::ServerSideEmit { data, request_id } => request(Request::ServerSideEmit {
                uid: Some(uid),
                request_id,
                data,
            }),
            Message::FetchSocketsResponse {
                request_id,
                sockets,
            } => {
                let sockets = sockets.into_iter().map(socket_wire).collect();
                response(uid, request_id, None, ("sockets", Wire::Array(sockets)))
            }
            Message::ServerSideEmitResponse { request_id, packet } => response(
                uid,
                request_id,
                Some(request_type::SERVER_SIDE_EMIT),
                ("data", packet.unwrap_or(Wire::Nil)),
            ),
            Message::BroadcastClientCount {
                request_id,
                client_count,
            } => response(
                uid,
                request_id,
                Some(request_type::BROADCAST_CLIENT_COUNT),
                (
                    "clientCount",
                    Wire::Int(i64::try_from(client_count).unwrap_or(i64::MAX)),
                ),
            ),
            Message::BroadcastAck { request_id, packet } => response(
                uid,
                request_id,
                Some(request_type::BROADCAST_ACK),
                ("packet", packet.unwrap_or(Wire::Nil)),
            ),
        }
    }

    /// The sharded form of a classic request this node sends, from `nsp`'s adapter whose uid
    /// the request carries.
    pub fn of_classic_request(request: Request, nsp: &str) -> Result<Envelope, NotInShardedWire> {
        let opts = |target: Target| Opts::of(target);
        let (uid, message) = match request {
            Request::Sockets { .. } => return Err(NotInShardedWire(request_type::SOCKETS)),
            Request::AllRooms { .. } => return Err(NotInShardedWire(request_type::ALL_ROOMS)),
            Request::Legacy { kind, .. } => return Err(NotInShardedWire(kind)),
            Request::JoinLeave {
                join,
                uid,
                target,
                rooms,
            } => {
                let opts = opts(target);
                let message = if join {
                    Message::SocketsJoin { opts, rooms }
                } else {
                    Message::SocketsLeave { opts, rooms }
                };
                (uid, message)
            }
            Request::Disconnect { uid, target, close } => (
                uid,
                Message::DisconnectSockets {
                    opts: opts(target),
                    close,
                },
            ),
            Request::Fetch {
                uid,
                request_id,
                target,
            } => (
                uid,
                Message::FetchSockets {
                    opts: opts(target),
                    request_id,
                },
            ),
            Request::ServerSideEmit {
                uid,
                request_id,
                data,
            } => (uid, Message::ServerSideEmit { data, request_id }),
            Request::BroadcastWithAck(request) => (
                request.uid,
                Message::Broadcast {
                    data: request.data,
                    request_id: Some(request.request_id),
                    opts: Opts {
                        target: request.target,
                        flags: request.flags.into(),
                    },
                },
            ),
        };
        Ok(Envelope {
            uid: uid.unwrap_or_default(),
            nsp: nsp.to_owned(),
            message,
        })
    }

    /// A broadcast without acks from the server `uid` of namespace `nsp`.
    pub fn broadcast(uid: &str, nsp: &str, data: Wire, target: Target, flags: Flags) -> Envelope {
        Envelope {
            uid: uid.to_owned(),
            nsp: nsp.to_owned(),
            message: Message::Broadcast {
                data,
                request_id: None,
                opts: Opts {
                    target,
                    flags: flags.into(),
                },
            },
        }
    }

    /// Type 8: this server's sockets for a `fetchSockets` request, described as the classic
    /// wire describes them ([`RemoteSocket::from_fetched`]).
    pub fn fetch_answer(
        uid: &str,
        nsp: &str,
        request_id: &str,
        sockets: &[FetchedSocket],
    ) -> Envelope {
        answer(
            uid,
            nsp,
            Message::FetchSocketsResponse {
                request_id: request_id.to_owned(),
                sockets: sockets.iter().map(RemoteSocket::from_fetched).collect(),
            },
        )
    }

    /// Type 10: the listener's answer (its first ack argument) to a server-side emit.
    pub fn server_side_emit_answer(
        uid: &str,
        nsp: &str,
        request_id: &str,
        packet: Wire,
    ) -> Envelope {
        answer(
            uid,
            nsp,
            Message::ServerSideEmitResponse {
                request_id: request_id.to_owned(),
                packet: Some(packet),
            },
        )
    }

    /// Type 11: how many client acks this server waits for (sent even when 0).
    pub fn client_count_answer(
        uid: &str,
        nsp: &str,
        request_id: &str,
        client_count: u64,
    ) -> Envelope {
        answer(
            uid,
            nsp,
            Message::BroadcastClientCount {
                request_id: request_id.to_owned(),
                client_count,
            },
        )
    }

    /// Type 12: one client's ack (its first argument) to a broadcast with acks.
    pub fn broadcast_ack_answer(uid: &str, nsp: &str, request_id: &str, packet: Wire) -> Envelope {
        answer(
            uid,
            nsp,
            Message::BroadcastAck {
                request_id: request_id.to_owned(),
                packet: Some(packet),
            },
        )
    }
}

fn answer(uid: &str, nsp: &str, message: Message) -> Envelope {
    Envelope {
        uid: uid.to_owned(),
        nsp: nsp.to_owned(),
        message,
    }
}

/// A classic answer: `{[type], requestId, <field>, uid}`.
fn response(
    uid: String,
    request_id: String,
    kind: Option<i64>,
    (field, value): (&str, Wire),
) -> ClassicForm {
    let mut body = Vec::with_capacity(4);
    if let Some(kind) = kind {
        body.push((Wire::Str("type".into()), Wire::Int(kind)));
    }
    body.push((Wire::Str("requestId".into()), Wire::Str(request_id.clone())));
    body.push((Wire::Str(field.to_owned()), value));
    body.push((Wire::Str("uid".into()), Wire::Str(uid.clone())));
    ClassicForm::Response(Response {
        request_id,
        uid: Some(uid),
        body: Wire::Map(body),
    })
}

/// One socket of a fetch answer as the classic answer holds it.
fn socket_wire(socket: RemoteSocket) -> Wire {
    let mut entries = vec![(Wire::Str("id".into()), Wire::Str(socket.id))];
    if let Some(handshake) = socket.handshake {
        entries.push((Wire::Str("handshake".into()), handshake));
    }
    entries.push((
        Wire::Str("rooms".into()),
        Wire::Array(socket.rooms.into_iter().map(Wire::Str).collect()),
    ));
    if let Some(data) = socket.data {
        entries.push((Wire::Str("data".into()), data));
    }
    Wire::Map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sharded_wire::BroadcastFlags;
    use crate::wire;

    fn s(v: &str) -> Wire {
        Wire::Str(v.to_owned())
    }

    fn target(rooms: &[&str], except: &[&str]) -> Target {
        Target {
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            except: except.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn from_peer(message: Message) -> Envelope {
        Envelope {
            uid: "74a21a952c0cefcb".into(),
            nsp: "/chat".into(),
            message,
        }
    }

    #[test]
    fn broadcasts_map_to_the_classic_broadcast_and_back() {
        let flags = Flags {
            volatile: true,
            timeout_ms: None,
        };
        let envelope = Envelope::broadcast(
            "74a21a952c0cefcb",
            "/chat",
            Wire::Array(vec![s("ev"), Wire::Int(1)]),
            target(&["room:1"], &["room:2"]),
            flags,
        );
        assert_eq!(
            envelope.clone().into_classic(),
            ClassicForm::Broadcast(BroadcastMessage {
                uid: "74a21a952c0cefcb".into(),
                data: Wire::Array(vec![s("ev"), Wire::Int(1)]),
                nsp: "/chat".into(),
                target: target(&["room:1"], &["room:2"]),
                flags,
            })
        );
        // `compress` has no classic place and is dropped; the rest survives.
        let mut compressed = envelope;
        if let Message::Broadcast { opts, .. } = &mut compressed.message {
            opts.flags.compress = Some(false);
        }
        let ClassicForm::Broadcast(classic) = compressed.into_classic() else {
            panic!("not a broadcast")
        };
        assert_eq!(classic.flags, flags);
    }

    #[test]
    fn requests_map_to_the_classic_kinds_and_back() {
        let requests = vec![
            Message::Broadcast {
                data: Wire::Array(vec![s("ask")]),
                request_id: Some("5f5de9bd191da562".into()),
                opts: Opts {
                    target: target(&["room2"], &[]),
                    flags: BroadcastFlags {
                        timeout_ms: Some(2000),
                        ..BroadcastFlags::default()
                    },
                },
            },
            Message::SocketsJoin {
                opts: Opts::of(target(&["a1"], &[])),
                rooms: vec!["room3".into()],
            },
            Message::SocketsLeave {
                opts: Opts::of(target(&["a1"], &[])),
                rooms: vec!["room3".into()],
            },
            Message::DisconnectSockets {
                opts: Opts::of(target(&["room2"], &[])),
                close: true,
            },
            Message::FetchSockets {
                opts: Opts::of(target(&[], &["x"])),
                request_id: "6ef20ab81446e1b3".into(),
            },
            Message::ServerSideEmit {
                data: Wire::Array(vec![s("hello"), s("x")]),
                request_id: None,
            },
            Message::ServerSideEmit {
                data: Wire::Array(vec![s("hello")]),
                request_id: Some("96028f02278c4173".into()),
            },
        ];
        for message in requests {
            let envelope = from_peer(message);
            let ClassicForm::Request(request) = envelope.clone().into_classic() else {
                panic!("not a request: {envelope:?}")
            };
            assert_eq!(Envelope::of_classic_request(request, "/chat"), Ok(envelope));
        }
    }

    #[test]
    fn classic_only_requests_are_refused() {
        let refused = [
            (
                Request::Sockets {
                    uid: None,
                    request_id: "r".into(),
                    rooms: vec![],
                },
                0,
            ),
            (
                Request::AllRooms {
                    uid: None,
                    request_id: "r".into(),
                    target: None,
                },
                1,
            ),
            (
                Request::Legacy {
                    kind: 4,
                    request_id: "r".into(),
                    sid: "s".into(),
                    room: None,
                    close: false,
                },
                4,
            ),
        ];
        for (request, kind) in refused {
            assert_eq!(
                Envelope::of_classic_request(request, "/"),
                Err(NotInShardedWire(kind))
            );
        }
    }

    /// The answers read as the classic readers read them, after the classic codec's own
    /// round trip (the bodies have the classic shape).
    #[test]
    fn answers_map_to_classic_responses_the_classic_readers_understand() {
        let classic = |envelope: Envelope| match envelope.into_classic() {
            ClassicForm::Response(response) => response,
            other => panic!("not a response: {other:?}"),
        };
        let peer = "74a21a952c0cefcb";

        let fetched = FetchedSocket {
            id: "t6NnwrlQGANncHSLAAAD".into(),
            rooms: vec!["t6NnwrlQGANncHSLAAAD".into(), "room1".into()],
            issued_ms: 5,
        };
        let fetch = classic(Envelope::fetch_answer(
            peer,
            "/",
            "r1",
            std::slice::from_ref(&fetched),
        ));
        assert_eq!(fetch.request_id, "r1");
        assert_eq!(fetch.uid.as_deref(), Some(peer));
        assert_eq!(fetch.socket_ids(), vec![fetched.id.clone()]);

        let count = classic(Envelope::client_count_answer(peer, "/", "r2", 3));
        assert_eq!(count.kind(), Some(request_type::BROADCAST_CLIENT_COUNT));
        assert_eq!(count.client_count(), Some(3));

        let ack = classic(Envelope::broadcast_ack_answer(peer, "/", "r3", s("yes")));
        assert_eq!(ack.kind(), Some(request_type::BROADCAST_ACK));
        assert_eq!(ack.body.get("packet"), Some(&s("yes")));

        let emit = classic(Envelope::server_side_emit_answer(
            peer,
            "/",
            "r4",
            s("pong"),
        ));
        assert_eq!(emit.kind(), Some(request_type::SERVER_SIDE_EMIT));
        assert_eq!(emit.body.get("data"), Some(&s("pong")));

        // An ack without argument: `nil`, as the classic readers take a missing `packet`.
        let bare = from_peer(Message::BroadcastAck {
            request_id: "r5".into(),
            packet: None,
        });
        assert_eq!(classic(bare).body.get("packet"), Some(&Wire::Nil));

        // Each classic body is what the classic decoder makes of the classic bytes.
        let bytes = wire::client_count_response("r2", 3, Some(peer));
        assert_eq!(
            classic(Envelope::client_count_answer(peer, "/", "r2", 3)),
            Response::decode(&bytes).unwrap()
        );
        let bytes = wire::server_side_ack_response("r4", &s("pong"), Some(peer));
        assert_eq!(
            classic(Envelope::server_side_emit_answer(
                peer,
                "/",
                "r4",
                s("pong")
            )),
            Response::decode(&bytes).unwrap()
        );
        let bytes = wire::broadcast_ack_response("r3", &s("yes"), Some(peer));
        assert_eq!(
            classic(Envelope::broadcast_ack_answer(peer, "/", "r3", s("yes"))),
            Response::decode(&bytes).unwrap()
        );
    }
}
