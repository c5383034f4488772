//! Golden bytes captured from Node.js `@socket.io/redis-adapter` 8.3.0 with `redis-cli MONITOR`
//! (vectors/node-redis-adapter/mon1.txt): the encoder must reproduce them byte for byte and the
//! decoder must read them.

use bytes::Bytes;

use crate::msgpack::Wire;
use crate::wire::{self, Flags, Request, Response, Target};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn s(v: &str) -> Wire {
    Wire::Str(v.to_owned())
}

const BROADCAST_ALL: &str = "93a64f50614d6b3783a47479706502a46461746194a568656c6c6f01a374776f81a5746872656503a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380";
const BROADCAST_ROOM_EXCEPT: &str = "93a64f50614d6b3783a47479706502a46461746192a172a178a36e7370a12f83a5726f6f6d7391a5726f6f6d31a665786365707491a5726f6f6d32a5666c61677380";
const BROADCAST_BINARY: &str = "93a64f50614d6b3783a47479706502a46461746192a362696ec403010203a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380";
const BROADCAST_VOLATILE: &str = "93a64f50614d6b3783a47479706502a46461746192a176cb3ff8000000000000a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677382a8766f6c6174696c65c3a8636f6d7072657373c2";
const BROADCAST_TWO_ROOMS: &str = "93a64f50614d6b3783a47479706502a46461746191a374776fa36e7370a12f83a5726f6f6d7392a5726f6f6d31a5726f6f6d32a665786365707490a5666c61677380";
const BROADCAST_ACK_REQUEST: &str = "85a3756964a64f50614d6b37a9726571756573744964a6323979487057a47479706507a67061636b657483a47479706502a46461746192a77769746861636ba171a36e7370a12fa46f70747383a5726f6f6d7390a665786365707490a5666c61677381a774696d656f7574cd03e8";
const BROADCAST_ACK_RESPONSE: &str =
    "83a47479706509a9726571756573744964a6323979487057a67061636b6574a561636b2d71";
/// `@socket.io/redis-emitter` 5.1.0: `emitter.to("room1").emit("from-emitter", 42)`.
const EMITTER_ROOM: &str = "93a7656d697474657283a47479706502a46461746192ac66726f6d2d656d69747465722aa36e7370a12f83a5726f6f6d7391a5726f6f6d31a5666c61677380a665786365707490";

#[test]
fn broadcast_encoder_reproduces_node_bytes() {
    let all = Wire::Array(vec![
        s("hello"),
        Wire::Int(1),
        s("two"),
        Wire::map([("three", Wire::Int(3))]),
    ]);
    assert_eq!(
        wire::encode_broadcast("OPaMk7", &all, "/", &Target::default(), Flags::default()),
        hex(BROADCAST_ALL)
    );
    let room = Target {
        rooms: strs(&["room1"]),
        except: strs(&["room2"]),
    };
    assert_eq!(
        wire::encode_broadcast(
            "OPaMk7",
            &Wire::Array(vec![s("r"), s("x")]),
            "/",
            &room,
            Flags::default()
        ),
        hex(BROADCAST_ROOM_EXCEPT)
    );
    let bin = Wire::Array(vec![s("bin"), Wire::Bin(Bytes::from_static(&[1, 2, 3]))]);
    assert_eq!(
        wire::encode_broadcast("OPaMk7", &bin, "/", &Target::default(), Flags::default()),
        hex(BROADCAST_BINARY)
    );
    let two = Target {
        rooms: strs(&["room1", "room2"]),
        except: vec![],
    };
    assert_eq!(
        wire::encode_broadcast(
            "OPaMk7",
            &Wire::Array(vec![s("two")]),
            "/",
            &two,
            Flags::default()
        ),
        hex(BROADCAST_TWO_ROOMS)
    );
}

#[test]
fn broadcast_decoder_reads_node_and_emitter_bytes() {
    let msg = wire::decode_broadcast(&hex(BROADCAST_ROOM_EXCEPT)).unwrap();
    assert_eq!(msg.uid, "OPaMk7");
    assert_eq!(msg.nsp, "/");
    assert_eq!(msg.data, Wire::Array(vec![s("r"), s("x")]));
    assert_eq!(
        msg.target,
        Target {
            rooms: strs(&["room1"]),
            except: strs(&["room2"])
        }
    );

    let msg = wire::decode_broadcast(&hex(BROADCAST_VOLATILE)).unwrap();
    assert!(msg.flags.volatile);
    assert_eq!(msg.data, Wire::Array(vec![s("v"), Wire::F64(1.5)]));

    let msg = wire::decode_broadcast(&hex(BROADCAST_BINARY)).unwrap();
    assert_eq!(
        msg.data,
        Wire::Array(vec![s("bin"), Wire::Bin(Bytes::from_static(&[1, 2, 3]))])
    );

    let msg = wire::decode_broadcast(&hex(EMITTER_ROOM)).unwrap();
    assert_eq!(msg.uid, "emitter");
    assert_eq!(msg.target.rooms, strs(&["room1"]));
    assert_eq!(
        msg.data,
        Wire::Array(vec![s("from-emitter"), Wire::Int(42)])
    );
}

#[test]
fn volatile_flag_encodes_as_node_does() {
    let bytes = wire::encode_broadcast(
        "OPaMk7",
        &Wire::Array(vec![s("v"), Wire::F64(1.5)]),
        "/",
        &Target::default(),
        Flags {
            volatile: true,
            timeout_ms: None,
        },
    );
    // Node also sends `compress: false` when asked; socketioxide has no compress flag.
    let node = hex(BROADCAST_VOLATILE);
    let flags_tail = hex("82a8766f6c6174696c65c3a8636f6d7072657373c2");
    assert!(node.ends_with(&flags_tail));
    let mut want = node[..node.len() - flags_tail.len()].to_vec();
    want.extend_from_slice(&hex("81a8766f6c6174696c65c3"));
    assert_eq!(bytes, want);
}

/// The Node peer's `remoteJoin` (`join`) or `remoteLeave` of `room3` for the sockets in `room1`.
fn room3_for_room1(join: bool) -> Request {
    Request::JoinLeave {
        join,
        uid: Some("OPaMk7".into()),
        target: Target {
            rooms: strs(&["room1"]),
            except: vec![],
        },
        rooms: strs(&["room3"]),
    }
}

#[test]
fn json_requests_match_node_bytes() {
    let cases: Vec<(Request, &str)> = vec![
        (
            Request::Fetch {
                uid: Some("OPaMk7".into()),
                request_id: "4zCDNT".into(),
                target: Target::default(),
            },
            r#"{"uid":"OPaMk7","requestId":"4zCDNT","type":5,"opts":{"rooms":[],"except":[]}}"#,
        ),
        (
            Request::AllRooms {
                uid: Some("OPaMk7".into()),
                request_id: "cv7Mzb".into(),
                target: None,
            },
            r#"{"uid":"OPaMk7","requestId":"cv7Mzb","type":1}"#,
        ),
        (
            room3_for_room1(true),
            r#"{"uid":"OPaMk7","type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room3"]}"#,
        ),
        (
            room3_for_room1(false),
            r#"{"uid":"OPaMk7","type":3,"opts":{"rooms":["room1"],"except":[]},"rooms":["room3"]}"#,
        ),
        (
            Request::ServerSideEmit {
                uid: Some("OPaMk7".into()),
                request_id: None,
                data: Wire::Array(vec![s("ping-srv"), s("hi")]),
            },
            r#"{"uid":"OPaMk7","type":6,"data":["ping-srv","hi"]}"#,
        ),
        (
            Request::ServerSideEmit {
                uid: Some("OPaMk7".into()),
                request_id: Some("nMvdBM".into()),
                data: Wire::Array(vec![s("ping-srv"), s("hi2")]),
            },
            r#"{"uid":"OPaMk7","requestId":"nMvdBM","type":6,"data":["ping-srv","hi2"]}"#,
        ),
        (
            Request::Disconnect {
                uid: Some("OPaMk7".into()),
                target: Target {
                    rooms: strs(&["room1"]),
                    except: vec![],
                },
                close: true,
            },
            r#"{"uid":"OPaMk7","type":4,"opts":{"rooms":["room1"],"except":[]},"close":true}"#,
        ),
    ];
    for (request, bytes) in cases {
        assert_eq!(String::from_utf8(request.encode()).unwrap(), bytes);
        assert_eq!(
            Request::decode(bytes.as_bytes()).unwrap(),
            request,
            "{bytes}"
        );
    }
}

#[test]
fn broadcast_with_ack_request_is_msgpack_as_node() {
    let request = Request::BroadcastWithAck(wire::AckBroadcast {
        uid: Some("OPaMk7".into()),
        request_id: "29yHpW".into(),
        data: Wire::Array(vec![s("withack"), s("q")]),
        nsp: "/".into(),
        target: Target::default(),
        flags: Flags {
            volatile: false,
            timeout_ms: Some(1000),
        },
    });
    assert_eq!(request.encode(), hex(BROADCAST_ACK_REQUEST));
    assert_eq!(
        Request::decode(&hex(BROADCAST_ACK_REQUEST)).unwrap(),
        request
    );
}

#[test]
fn responses_match_node_bytes() {
    assert_eq!(
        wire::broadcast_ack_response("29yHpW", &s("ack-q"), None),
        hex(BROADCAST_ACK_RESPONSE)
    );
    assert_eq!(
        String::from_utf8(wire::client_count_response("29yHpW", 1, None)).unwrap(),
        r#"{"type":8,"requestId":"29yHpW","clientCount":1}"#
    );
    assert_eq!(
        String::from_utf8(wire::server_side_ack_response(
            "nMvdBM",
            &s("pong-from-4002"),
            None
        ))
        .unwrap(),
        r#"{"type":6,"requestId":"nMvdBM","data":"pong-from-4002"}"#
    );
    assert_eq!(
        String::from_utf8(wire::rooms_response(
            "cv7Mzb",
            &strs(&["YNritdhB3HEJDAGPAAAB", "room1"]),
            None
        ))
        .unwrap(),
        r#"{"requestId":"cv7Mzb","rooms":["YNritdhB3HEJDAGPAAAB","room1"]}"#
    );

    let ack = Response::decode(&hex(BROADCAST_ACK_RESPONSE)).unwrap();
    assert_eq!(ack.request_id, "29yHpW");
    assert_eq!(ack.kind(), Some(9));
    assert_eq!(ack.body.get("packet"), Some(&s("ack-q")));

    let fetched = Response::decode(
        br#"{"requestId":"4zCDNT","sockets":[{"id":"YNritdhB3HEJDAGPAAAB","handshake":{"headers":{"host":"localhost:4002"},"time":"Wed Nov 25 2026 18:09:53 GMT+0000 (Coordinated Universal Time)","address":"::ffff:127.0.0.1","xdomain":false,"secure":false,"issued":1795630193995,"url":"/socket.io/?EIO=4&transport=websocket","query":{"EIO":"4","transport":"websocket"},"auth":{}},"rooms":["YNritdhB3HEJDAGPAAAB","room1"],"data":{"user":"u4002"}}]}"#,
    )
    .unwrap();
    assert_eq!(fetched.socket_ids(), strs(&["YNritdhB3HEJDAGPAAAB"]));
    assert_eq!(fetched.uid, None);

    let count = Response::decode(br#"{"type":8,"requestId":"29yHpW","clientCount":1}"#).unwrap();
    assert_eq!((count.kind(), count.client_count()), (Some(8), Some(1)));
}

/// The messages no capture holds, pinned in the form Node writes them (field order included).
#[test]
fn uncaptured_messages_keep_nodes_field_order() {
    let json = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    let cases: Vec<(Request, &str)> = vec![
        (
            Request::Sockets {
                uid: Some("u".into()),
                request_id: "r".into(),
                rooms: strs(&["a"]),
            },
            r#"{"uid":"u","requestId":"r","type":0,"rooms":["a"]}"#,
        ),
        (
            Request::AllRooms {
                uid: Some("u".into()),
                request_id: "r".into(),
                target: Some(Target {
                    rooms: strs(&["a"]),
                    except: strs(&["b"]),
                }),
            },
            r#"{"uid":"u","requestId":"r","type":1,"opts":{"rooms":["a"],"except":["b"]}}"#,
        ),
        (
            Request::Legacy {
                kind: 2,
                request_id: "r".into(),
                sid: "s".into(),
                room: Some("x".into()),
                close: false,
            },
            r#"{"requestId":"r","type":2,"sid":"s","room":"x"}"#,
        ),
        (
            Request::Legacy {
                kind: 4,
                request_id: "r".into(),
                sid: "s".into(),
                room: None,
                close: true,
            },
            r#"{"requestId":"r","type":4,"sid":"s","close":true}"#,
        ),
    ];
    for (request, bytes) in cases {
        assert_eq!(json(request.encode()), bytes);
        assert_eq!(
            Request::decode(bytes.as_bytes()).unwrap(),
            request,
            "{bytes}"
        );
    }
    assert_eq!(
        json(wire::socket_ids_response("r", &strs(&["a"]), Some("u"))),
        r#"{"requestId":"r","sockets":["a"],"uid":"u"}"#
    );
    assert_eq!(
        json(wire::legacy_ack_response("r", None)),
        r#"{"requestId":"r"}"#
    );
    assert_eq!(
        json(wire::server_side_ack_response("r", &s("x"), Some("u"))),
        r#"{"type":6,"requestId":"r","data":"x","uid":"u"}"#
    );
    assert_eq!(
        json(wire::client_count_response("r", 0, Some("u"))),
        r#"{"type":8,"requestId":"r","clientCount":0,"uid":"u"}"#
    );
    let fetched = wire::FetchedSocket {
        id: "s".into(),
        rooms: strs(&["s", "a"]),
        issued_ms: 0,
    };
    assert_eq!(
        json(wire::fetch_response("r", &[fetched], Some("u"))),
        concat!(
            r#"{"requestId":"r","sockets":[{"id":"s","handshake":{"headers":{},"time":"","#,
            r#""address":"","xdomain":false,"secure":false,"issued":0,"url":"","query":{},"#,
            r#""auth":{}},"rooms":["s","a"],"data":{}}],"uid":"u"}"#
        )
    );
    // The type-9 answer of this adapter: Node's bytes plus its `uid` last.
    let mut signed = hex(BROADCAST_ACK_RESPONSE);
    signed[0] = 0x84;
    signed.extend_from_slice(&hex("a3756964a175"));
    assert_eq!(
        wire::broadcast_ack_response("29yHpW", &s("ack-q"), Some("u")),
        signed
    );
}

#[test]
fn requests_from_the_emitter_and_legacy_peers_decode() {
    let join =
        Request::decode(br#"{"type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room3"]}"#)
            .unwrap();
    assert!(matches!(
        join,
        Request::JoinLeave {
            join: true,
            uid: None,
            ..
        }
    ));
    let legacy =
        Request::decode(br#"{"requestId":"abc","type":2,"sid":"YNritdhB3HEJDAGPAAAB","room":"r"}"#)
            .unwrap();
    assert!(matches!(legacy, Request::Legacy { kind: 2, .. }));
    let numeric_rooms = Request::decode(
        br#"{"uid":"x","type":3,"opts":{"rooms":[5,1.5],"except":[]},"rooms":[7]}"#,
    )
    .unwrap();
    let Request::JoinLeave { target, rooms, .. } = numeric_rooms else {
        panic!("not a leave")
    };
    assert_eq!(target.rooms, strs(&["5", "1.5"]));
    assert_eq!(rooms, strs(&["7"]));
}

mod fuzz {
    use proptest::prelude::*;

    use crate::msgpack::Wire;
    use crate::wire::{self, Request, Response};

    fn decode_everything(bytes: &[u8]) {
        let _ = Wire::decode(bytes);
        let _ = wire::decode_broadcast(bytes);
        let _ = Request::decode(bytes);
        if let Ok(response) = Response::decode(bytes) {
            let _ = (
                response.rooms(),
                response.socket_ids(),
                response.client_count(),
            );
        }
        if let Ok(msg) = wire::decode_broadcast(bytes) {
            let _ = crate::adapter::wire_to_value(&msg.data);
        }
        // The sharded wire's envelopes, on the same bytes.
        crate::test_support::decode_sharded(bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_everything(&bytes);
        }

        #[test]
        fn arbitrary_json_looking_bytes_never_panic(tail in "[\\[\\]{}:,\"a-z0-9 .-]{0,200}") {
            decode_everything(format!("{{{tail}").as_bytes());
        }

        #[test]
        fn mutated_node_messages_never_panic(index in 0usize..120, byte in any::<u8>(), cut in 0usize..120) {
            for golden in [super::BROADCAST_ROOM_EXCEPT, super::BROADCAST_ACK_REQUEST, super::BROADCAST_BINARY] {
                let mut bytes = super::hex(golden);
                let i = index % bytes.len();
                bytes[i] = byte;
                bytes.truncate(bytes.len() - cut % bytes.len());
                decode_everything(&bytes);
            }
        }
    }
}
