//! Tests of the envelope codec (`envelope.rs`): Node's JSON and msgpack shapes, round trips,
//! bounds, and inputs that must be errors rather than panics.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::msgpack::DecodeError;
use crate::test_support::{any_scalar, decode_sharded, one_socket_fetch_answer};
use crate::wire::{FetchedSocket, WireError};

fn s(v: &str) -> Wire {
    Wire::Str(v.to_owned())
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn envelope(message: Message) -> Envelope {
    Envelope {
        uid: "8d5c3c2865859083".into(),
        nsp: "/".into(),
        message,
    }
}

fn room_opts(rooms: &[&str], except: &[&str]) -> Opts {
    Opts::of(Target {
        rooms: strs(rooms),
        except: strs(except),
    })
}

/// Each type in the JSON Node writes (shapes of `tests/vectors/sharded/`, with short ids).
/// A client's ack to broadcast `5f5de9bd191da562`, as captured from Node.
fn client_ack(packet: Option<Wire>) -> Message {
    Message::BroadcastAck {
        request_id: "5f5de9bd191da562".into(),
        packet,
    }
}

fn json_cases() -> Vec<(Message, &'static str)> {
    vec![
        (
            Message::Broadcast {
                data: Wire::Array(vec![s("all"), Wire::Int(1), s("two")]),
                request_id: None,
                opts: Opts::default(),
            },
            r#"{"type":3,"data":{"packet":{"type":2,"data":["all",1,"two"]},"opts":{"rooms":[],"except":[],"flags":{}}}"#,
        ),
        (
            Message::Broadcast {
                data: Wire::Array(vec![s("ask"), Wire::Int(7)]),
                request_id: Some("5f5de9bd191da562".into()),
                opts: Opts {
                    target: Target::default(),
                    flags: BroadcastFlags {
                        timeout_ms: Some(2000),
                        ..BroadcastFlags::default()
                    },
                },
            },
            r#"{"type":3,"data":{"packet":{"type":2,"data":["ask",7]},"requestId":"5f5de9bd191da562","opts":{"rooms":[],"except":[],"flags":{"timeout":2000}}}"#,
        ),
        (
            Message::Broadcast {
                data: Wire::Array(vec![s("v")]),
                request_id: None,
                opts: Opts {
                    target: room_opts(&["room1"], &["room2"]).target,
                    flags: BroadcastFlags {
                        volatile: true,
                        compress: Some(false),
                        timeout_ms: None,
                    },
                },
            },
            r#"{"type":3,"data":{"packet":{"type":2,"data":["v"]},"opts":{"rooms":["room1"],"except":["room2"],"flags":{"volatile":true,"compress":false}}}"#,
        ),
        (
            Message::SocketsJoin {
                opts: room_opts(&["t6NnwrlQGANncHSLAAAD"], &[]),
                rooms: strs(&["room3"]),
            },
            r#"{"type":4,"data":{"opts":{"rooms":["t6NnwrlQGANncHSLAAAD"],"except":[],"flags":{}},"rooms":["room3"]}"#,
        ),
        (
            Message::SocketsLeave {
                opts: room_opts(&["t6NnwrlQGANncHSLAAAD"], &[]),
                rooms: strs(&["room3"]),
            },
            r#"{"type":5,"data":{"opts":{"rooms":["t6NnwrlQGANncHSLAAAD"],"except":[],"flags":{}},"rooms":["room3"]}"#,
        ),
        (
            Message::DisconnectSockets {
                opts: room_opts(&["room2"], &[]),
                close: true,
            },
            r#"{"type":6,"data":{"opts":{"rooms":["room2"],"except":[],"flags":{}},"close":true}"#,
        ),
        (
            Message::FetchSockets {
                opts: Opts::default(),
                request_id: "6ef20ab81446e1b3".into(),
            },
            r#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"6ef20ab81446e1b3"}"#,
        ),
        (
            Message::FetchSocketsResponse {
                request_id: "4fc1cb2857436a68".into(),
                sockets: vec![],
            },
            r#"{"type":8,"data":{"requestId":"4fc1cb2857436a68","sockets":[]}"#,
        ),
        (
            Message::ServerSideEmit {
                data: Wire::Array(vec![s("hello"), Wire::Int(1), s("x")]),
                request_id: None,
            },
            r#"{"type":9,"data":{"packet":["hello",1,"x"]}"#,
        ),
        (
            Message::ServerSideEmit {
                data: Wire::Array(vec![s("hello"), s("ack me")]),
                request_id: Some("96028f02278c4173".into()),
            },
            r#"{"type":9,"data":{"requestId":"96028f02278c4173","packet":["hello","ack me"]}"#,
        ),
        (
            Message::ServerSideEmitResponse {
                request_id: "96028f02278c4173".into(),
                packet: Some(s("pong-C")),
            },
            r#"{"type":10,"data":{"requestId":"96028f02278c4173","packet":"pong-C"}"#,
        ),
        (
            Message::BroadcastClientCount {
                request_id: "5f5de9bd191da562".into(),
                client_count: 0,
            },
            r#"{"type":11,"data":{"requestId":"5f5de9bd191da562","clientCount":0}"#,
        ),
        (
            client_ack(Some(s("ack-b1"))),
            r#"{"type":12,"data":{"requestId":"5f5de9bd191da562","packet":"ack-b1"}"#,
        ),
        (
            // An ack called with no argument: JSON.stringify leaves `packet` out.
            client_ack(None),
            r#"{"type":12,"data":{"requestId":"5f5de9bd191da562"}"#,
        ),
    ]
}

#[test]
fn every_type_encodes_as_nodes_json_and_decodes_back() {
    for (message, head) in json_cases() {
        let envelope = envelope(message);
        let want = format!(r#"{head},"uid":"8d5c3c2865859083","nsp":"/"}}"#);
        assert!(!envelope.uses_msgpack(), "{want}");
        let bytes = envelope.encode().unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        assert_eq!(Envelope::decode(&bytes).unwrap(), envelope, "{want}");
    }
}

#[test]
fn binary_makes_the_whole_envelope_msgpack_in_nodes_key_order() {
    let message = Message::Broadcast {
        data: Wire::Array(vec![s("bin"), Wire::Bin(Bytes::from_static(&[1, 2, 3]))]),
        request_id: None,
        opts: Opts::default(),
    };
    let envelope = Envelope {
        uid: "u".into(),
        nsp: "/".into(),
        message,
    };
    assert!(envelope.uses_msgpack());
    let mut want = b"\x84\xa4type\x03\xa4data\x82\xa6packet\x82\xa4type\x02\xa4data\x92\xa3bin\xc4\x03\x01\x02\x03".to_vec();
    want.extend_from_slice(
        b"\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80\xa3uid\xa1u\xa3nsp\xa1/",
    );
    let bytes = envelope.encode().unwrap();
    assert_eq!(bytes, want);
    assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
}

#[test]
fn binary_in_answers_and_emits_is_msgpack_and_never_in_requests_without_data() {
    let bin = || Wire::Bin(Bytes::from_static(&[0xc1]));
    let with_binary = [
        Message::ServerSideEmit {
            data: Wire::Array(vec![s("e"), Wire::map([("b", bin())])]),
            request_id: Some("r".into()),
        },
        Message::ServerSideEmitResponse {
            request_id: "r".into(),
            packet: Some(bin()),
        },
        Message::BroadcastAck {
            request_id: "r".into(),
            packet: Some(Wire::Array(vec![bin()])),
        },
        one_socket_fetch_answer(Some(bin())),
    ];
    for message in with_binary {
        let envelope = envelope(message);
        assert!(envelope.uses_msgpack(), "{envelope:?}");
        let bytes = envelope.encode().unwrap();
        assert_ne!(bytes[0], b'{');
        assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
    }
}

#[test]
fn our_fetch_answer_carries_the_classic_minimal_handshake() {
    let fetched = FetchedSocket {
        id: "0123456789abcdef".into(),
        rooms: strs(&["room:1"]),
        issued_ms: 1_796_598_540_569,
    };
    let socket = RemoteSocket::from_fetched(&fetched);
    assert_eq!(socket.to_fetched(), fetched);
    // The very socket object the classic answer carries.
    let classic = crate::wire::fetch_response("r", std::slice::from_ref(&fetched), None);
    let classic = crate::wire::Response::decode(&classic).unwrap();
    let classic_socket = &classic.body.get("sockets").unwrap().as_array().unwrap()[0];
    assert_eq!(classic_socket.get("handshake"), socket.handshake.as_ref());
    assert_eq!(classic_socket.get("data"), socket.data.as_ref());
    let bytes = envelope(Message::FetchSocketsResponse {
        request_id: "r".into(),
        sockets: vec![socket],
    })
    .encode()
    .unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        concat!(
            r#"{"type":8,"data":{"requestId":"r","sockets":[{"id":"0123456789abcdef","#,
            r#""handshake":{"headers":{},"time":"","address":"","xdomain":false,"#,
            r#""secure":false,"issued":1796598540569,"url":"","query":{},"auth":{}},"#,
            r#""rooms":["room:1"],"data":{}}]},"uid":"8d5c3c2865859083","nsp":"/"}"#
        )
    );
}

#[test]
fn peers_fields_are_read_one_by_one() {
    // Numbers as rooms (valid in Node), duplicates, extra fields, unknown flags.
    let bytes = br#"{"nsp":"/chat","type":4,"extra":1,"data":{"rooms":[7,"a","a",1.5,null],"opts":{"rooms":["x"],"flags":{"local":true,"volatile":"yes"}}},"uid":42}"#;
    let envelope = Envelope::decode(bytes).unwrap();
    assert_eq!(envelope.uid, "42");
    assert_eq!(envelope.nsp, "/chat");
    assert_eq!(
        envelope.message,
        Message::SocketsJoin {
            opts: room_opts(&["x"], &[]),
            rooms: strs(&["7", "a", "1.5"]),
        }
    );
    // Without uid and nsp: matches no server and no namespace.
    let envelope =
        Envelope::decode(br#"{"type":11,"data":{"requestId":"r","clientCount":2}}"#).unwrap();
    assert_eq!((envelope.uid.as_str(), envelope.nsp.as_str()), ("", ""));
    // Fetch answers: entries without an id are skipped.
    let envelope = Envelope::decode(
        br#"{"type":8,"data":{"requestId":"r","sockets":[{"rooms":["a"]},5,{"id":"s","rooms":["s"]}]}}"#,
    )
    .unwrap();
    let Message::FetchSocketsResponse { sockets, .. } = envelope.message else {
        panic!("not a fetch answer")
    };
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].to_fetched().issued_ms, 0);
}

#[test]
fn malformed_messages_are_clear_errors() {
    let shape = |bytes: &[u8]| match Envelope::decode(bytes) {
        Err(EnvelopeError::Wire(WireError::Shape(why))) => why,
        other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
    };
    shape(br#"{"data":{}}"#);
    shape(b"\x93\x01\x02\x03");
    shape(br#"{"type":3,"data":{"opts":{}}}"#);
    shape(br#"{"type":3,"data":{"packet":{"type":2,"data":[]}}}"#);
    shape(br#"{"type":3,"data":[]}"#);
    shape(br#"{"type":4,"data":{"opts":{}}}"#);
    shape(br#"{"type":7,"data":{"opts":{}}}"#);
    shape(br#"{"type":8,"data":{"requestId":"r"}}"#);
    shape(br#"{"type":9,"data":{"packet":"x"}}"#);
    shape(br#"{"type":10,"data":{"packet":"x"}}"#);
    shape(br#"{"type":11,"data":{"requestId":"r","clientCount":-1}}"#);
    shape(br#"{"type":12,"data":{}}"#);
    for kind in [0, 1, 2, 13, 99, -3] {
        assert_eq!(
            Envelope::decode(format!(r#"{{"type":{kind},"uid":"x","nsp":"/"}}"#).as_bytes()),
            Err(EnvelopeError::UnknownType(kind))
        );
    }
    assert!(matches!(
        Envelope::decode(b"{not json"),
        Err(EnvelopeError::Wire(WireError::Json(_)))
    ));
    assert!(matches!(
        Envelope::decode(b"{\xff}"),
        Err(EnvelopeError::Wire(WireError::Json(_)))
    ));
    assert!(matches!(
        Envelope::decode(b""),
        Err(EnvelopeError::Wire(WireError::Msgpack(_)))
    ));
}

#[test]
fn a_decoded_value_is_as_large_as_the_limits_doc_says() {
    assert_eq!(std::mem::size_of::<Wire>(), 40);
}

#[test]
fn size_is_bounded_before_parsing() {
    let bytes = envelope(json_cases().remove(0).0).encode().unwrap();
    assert!(Envelope::decode_with_limit(&bytes, bytes.len()).is_ok());
    assert_eq!(
        Envelope::decode_with_limit(&bytes, bytes.len() - 1),
        Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: bytes.len() - 1
        })
    );
}

#[test]
fn hostile_lengths_are_errors_without_allocating_them() {
    // A map, an array and a string claiming 4 G entries or bytes, and deep nesting.
    for bytes in [
        &b"\xdf\xff\xff\xff\xff"[..],
        b"\x84\xa4type\x03\xa4data\x81\xa6packet\x82\xa4type\x02\xa4data\xdd\xff\xff\xff\xff",
        b"\x84\xa4type\x03\xa3uid\xdb\xff\xff\xff\xff",
    ] {
        assert!(
            matches!(
                Envelope::decode(bytes),
                Err(EnvelopeError::Wire(WireError::Msgpack(_)))
            ),
            "{bytes:x?}"
        );
    }
    assert!(matches!(
        Envelope::decode(&[0x91; 1000]),
        Err(EnvelopeError::Wire(WireError::Msgpack(
            DecodeError::TooDeep
        )))
    ));
    let deep_json = format!(r#"{{"type":9,"data":{{"packet":{}}}}}"#, "[".repeat(1000));
    assert!(matches!(
        Envelope::decode(deep_json.as_bytes()),
        Err(EnvelopeError::Wire(WireError::Json(_)))
    ));
}

/// `["ev", [[...[leaf]...]]]` with `leaf` at `level` (the event array is level 0).
fn event_with_value_at(level: usize, leaf: Wire) -> Wire {
    let mut value = leaf;
    for _ in 1..level {
        value = Wire::Array(vec![value]);
    }
    Wire::Array(vec![s("ev"), value])
}

#[test]
fn every_event_the_gateway_accepts_crosses_in_both_encodings() {
    for leaf in [Wire::Int(1), Wire::Bin(Bytes::from_static(&[1]))] {
        let deepest = envelope(Message::Broadcast {
            data: event_with_value_at(MAX_EVENT_DATA_DEPTH, leaf.clone()),
            request_id: None,
            opts: Opts::default(),
        });
        let bytes = deepest.encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), deepest, "{leaf:?}");

        let too_deep = envelope(Message::Broadcast {
            data: event_with_value_at(MAX_EVENT_DATA_DEPTH + 1, leaf.clone()),
            request_id: None,
            opts: Opts::default(),
        });
        assert!(
            Envelope::decode(&too_deep.encode().unwrap()).is_err(),
            "{leaf:?}"
        );
    }
}

#[test]
fn dispositions_follow_node() {
    let own = "8d5c3c2865859083";
    let from = |uid: &str, nsp: &str, message: Message| Envelope {
        uid: uid.into(),
        nsp: nsp.into(),
        message,
    };
    let request = Message::FetchSockets {
        opts: Opts::default(),
        request_id: "r".into(),
    };
    let answer = Message::BroadcastClientCount {
        request_id: "r".into(),
        client_count: 1,
    };
    let d = |e: Envelope, on_response: bool| e.disposition(on_response, own, "/");
    assert_eq!(
        d(from("peer", "/", request.clone()), false),
        Disposition::Apply
    );
    assert_eq!(
        d(from(own, "/", request.clone()), false),
        Disposition::Ignore(IgnoreReason::OwnMessage)
    );
    assert_eq!(
        d(from("peer", "/chat", request.clone()), false),
        Disposition::Ignore(IgnoreReason::OtherNamespace)
    );
    assert_eq!(
        d(from("peer", "", request.clone()), false),
        Disposition::Ignore(IgnoreReason::OtherNamespace)
    );
    assert_eq!(
        d(from("peer", "/", answer.clone()), false),
        Disposition::Answer
    );
    assert_eq!(
        d(from("peer", "/", answer.clone()), true),
        Disposition::Answer
    );
    // On the response channel Node does not look at uid or nsp.
    assert_eq!(d(from("", "", answer), true), Disposition::Answer);
    assert_eq!(
        d(from("peer", "/", request), true),
        Disposition::Ignore(IgnoreReason::NotAnAnswer)
    );
}

fn any_wire() -> impl Strategy<Value = Wire> {
    let leaf = prop_oneof![
        4 => any_scalar(),
        // JSON has no NaN or infinities; every finite float crosses.
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Wire::F64),
        1 => ".{0,20}".prop_map(Wire::Str),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Wire::Bin(b.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Wire::Array),
            // String keys (JSON's); `_placeholder` objects are excluded by the key set.
            proptest::collection::vec(("[a-z]{0,6}", inner), 0..6).prop_map(|entries| {
                Wire::Map(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Wire::Str(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn any_event() -> impl Strategy<Value = Wire> {
    (".{0,10}", proptest::collection::vec(any_wire(), 0..4)).prop_map(|(name, args)| {
        let mut items = vec![Wire::Str(name)];
        items.extend(args);
        Wire::Array(items)
    })
}

fn any_rooms() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set(".{0,12}", 0..4).prop_map(|set| set.into_iter().collect())
}

fn any_opts() -> impl Strategy<Value = Opts> {
    (
        any_rooms(),
        any_rooms(),
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0..=i64::MAX as u64),
    )
        .prop_map(|(rooms, except, volatile, compress, timeout_ms)| Opts {
            target: Target { rooms, except },
            flags: BroadcastFlags {
                volatile,
                compress,
                timeout_ms,
            },
        })
}

fn any_message() -> impl Strategy<Value = Message> {
    let id = "[0-9a-f]{16}";
    prop_oneof![
        (any_event(), proptest::option::of(id), any_opts()).prop_map(|(data, request_id, opts)| {
            Message::Broadcast {
                data,
                request_id,
                opts,
            }
        }),
        (any_opts(), any_rooms()).prop_map(|(opts, rooms)| Message::SocketsJoin { opts, rooms }),
        (any_opts(), any_rooms()).prop_map(|(opts, rooms)| Message::SocketsLeave { opts, rooms }),
        (any_opts(), any::<bool>())
            .prop_map(|(opts, close)| Message::DisconnectSockets { opts, close }),
        (any_opts(), id).prop_map(|(opts, request_id)| Message::FetchSockets { opts, request_id }),
        (
            id,
            proptest::collection::vec(
                (
                    ".{1,20}",
                    proptest::option::of(any_wire()),
                    any_rooms(),
                    proptest::option::of(any_wire())
                ),
                0..3
            )
        )
            .prop_map(|(request_id, sockets)| Message::FetchSocketsResponse {
                request_id,
                sockets: sockets
                    .into_iter()
                    .map(|(id, handshake, rooms, data)| RemoteSocket {
                        id,
                        handshake,
                        rooms,
                        data
                    })
                    .collect(),
            }),
        (any_event(), proptest::option::of(id))
            .prop_map(|(data, request_id)| Message::ServerSideEmit { data, request_id }),
        (id, proptest::option::of(any_wire())).prop_map(|(request_id, packet)| {
            Message::ServerSideEmitResponse { request_id, packet }
        }),
        (id, 0..=i64::MAX as u64).prop_map(|(request_id, client_count)| {
            Message::BroadcastClientCount {
                request_id,
                client_count,
            }
        }),
        (id, proptest::option::of(any_wire()))
            .prop_map(|(request_id, packet)| Message::BroadcastAck { request_id, packet }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// What this adapter sends, it reads back unchanged, in either encoding.
    #[test]
    fn every_message_round_trips(
        message in any_message(),
        uid in "[0-9a-f]{16}|.{0,20}",
        nsp in "/[a-z]{0,8}",
    ) {
        let envelope = Envelope { uid, nsp, message };
        let bytes = envelope.encode().unwrap();
        prop_assert_eq!(bytes[0] == b'{', !envelope.uses_msgpack());
        prop_assert_eq!(Envelope::decode(&bytes), Ok(envelope));
    }

    /// Any bytes, and JSON-looking ones (`crate::golden_tests`, with the classic wire's
    /// decoders); here envelopes whose `data` is such bytes: values or errors, never panics.
    #[test]
    fn json_looking_envelope_data_never_panics(tail in "[\\[\\]{}:,\"a-z0-9 .-]{0,200}") {
        decode_sharded(format!("{{\"type\":3,\"data\":{tail}").as_bytes());
    }

    /// Valid messages cut short or with one byte changed are errors or values, never panics.
    #[test]
    fn mutated_messages_never_panic(
        message in any_message(),
        index in any::<usize>(),
        byte in any::<u8>(),
        cut in any::<usize>(),
    ) {
        let mut bytes = envelope(message).encode().unwrap();
        let i = index % bytes.len();
        bytes[i] = byte;
        bytes.truncate(bytes.len() - cut % bytes.len());
        decode_sharded(&bytes);
    }
}
