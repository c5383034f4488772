//! Golden tests against the MONITOR captures of Node's sharded adapter in
//! `tests/vectors/sharded/` (their README explains the format): every `SPUBLISH` payload
//! decodes, re-encodes to the same bytes, and was published on the channel [`route`] names.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{
    ClassicForm, DEFAULT_MAX_ENVELOPE_BYTES, Destination, Envelope, IgnoreReason, Message,
    Received, SubscriptionMode, publish, receive, route,
};
use crate::channels::ShardedChannels;

/// The capture files and the subscription mode each was made in.
const CAPTURES: [(&str, SubscriptionMode); 4] = [
    ("static.txt", SubscriptionMode::Static),
    ("dynamic.txt", SubscriptionMode::Dynamic),
    ("dynamic-private.txt", SubscriptionMode::DynamicPrivate),
    ("failover.txt", SubscriptionMode::Dynamic),
];

/// One `SPUBLISH` of a capture, placeholders substituted back.
#[derive(Debug)]
struct Published {
    /// `file:line`, for messages.
    at: String,
    /// The `=== <section>` it belongs to.
    section: String,
    /// The server that published it (`A` of `A-pub`).
    server: String,
    channel: String,
    payload: Vec<u8>,
}

/// A capture file, parsed.
#[derive(Debug)]
struct Capture {
    /// The `subscriptionMode` its header names.
    mode: SubscriptionMode,
    /// `A` to server A's uid.
    uids: HashMap<String, String>,
    published: Vec<Published>,
}

/// Undoes the quoting of Redis's `sdscatrepr` (how MONITOR prints arguments): `\\`, `\"`,
/// `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH`.
fn unquote(arg: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(arg.len());
    let mut bytes = arg.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next() {
            Some(b'\\') => b'\\',
            Some(b'"') => b'"',
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'a') => 0x07,
            Some(b'b') => 0x08,
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let [Some(hi), Some(lo)] = hex else {
                    return Err(format!("cut \\x escape in {arg}"));
                };
                let digits = String::from_utf8(vec![hi, lo]).map_err(|e| e.to_string())?;
                u8::from_str_radix(&digits, 16).map_err(|e| format!("{e}: \\x{digits}"))?
            }
            other => return Err(format!("unknown escape {other:?} in {arg}")),
        });
    }
    Ok(out)
}

/// The quoted arguments of a MONITOR line, from its first `"`, still quoted.
fn quoted_args(line: &str) -> Result<Vec<&str>, String> {
    let mut rest = &line[line.find('"').ok_or("no quoted argument")?..];
    let mut args = Vec::new();
    while let Some(body) = rest.strip_prefix('"') {
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("unterminated argument in {line}"))?;
        args.push(&body[..end]);
        rest = body[end + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(format!("unquoted text {rest:?} in {line}"));
    }
    Ok(args)
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

fn capture_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/sharded")
        .join(file)
}

/// Reads and parses one capture file; a missing file, an unreadable line or a file without
/// any `SPUBLISH` is a failure.
fn load(file: &str) -> Capture {
    let path = capture_path(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "capture {} is missing ({e}); regenerate it as tests/vectors/sharded/README.md says",
            path.display()
        )
    });
    let mode = text
        .lines()
        .next()
        .and_then(|first| first.split("subscriptionMode \"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{file}: first line names no subscriptionMode"))
        .parse::<SubscriptionMode>()
        .unwrap_or_else(|e| panic!("{file}: {e}"));

    let mut placeholders: Vec<(String, String)> = Vec::new();
    let mut uids = HashMap::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let Some((name, value)) = line.trim_start_matches('#').trim().split_once(" = ") else {
            continue;
        };
        if !(name.starts_with('<') && name.ends_with('>')) {
            continue;
        }
        if let Some(server) = name.strip_prefix("<uid:").and_then(|s| s.strip_suffix('>')) {
            uids.insert(server.to_owned(), value.to_owned());
        }
        placeholders.push((name.to_owned(), value.to_owned()));
    }
    assert!(
        !uids.is_empty(),
        "{file}: header lists no <uid:X> placeholder"
    );

    let substitute = |bytes: Vec<u8>| {
        placeholders.iter().fold(bytes, |bytes, (name, value)| {
            replace_all(&bytes, name.as_bytes(), value.as_bytes())
        })
    };
    let mut published = Vec::new();
    let mut section = String::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", n + 1);
        if let Some(name) = line.strip_prefix("=== ") {
            section = name.trim().to_owned();
            continue;
        }
        if !line.contains("\"SPUBLISH\"") {
            continue;
        }
        let mut columns = line.split_whitespace();
        let (_primary, connection) = (columns.next(), columns.next());
        let server = connection
            .and_then(|c| c.strip_suffix("-pub"))
            .unwrap_or_else(|| panic!("{at}: SPUBLISH not on a -pub connection"))
            .to_owned();
        let args = quoted_args(line).unwrap_or_else(|e| panic!("{at}: {e}"));
        let [command, channel, payload] = args.as_slice() else {
            panic!("{at}: SPUBLISH with {} arguments", args.len());
        };
        assert_eq!(*command, "SPUBLISH", "{at}");
        let channel = substitute(unquote(channel).unwrap_or_else(|e| panic!("{at}: {e}")));
        let payload = substitute(unquote(payload).unwrap_or_else(|e| panic!("{at}: {e}")));
        for bytes in [&channel, &payload] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains("<uid:") && !text.contains("<sid:"),
                "{at}: a placeholder the header does not define is left in {text}"
            );
        }
        published.push(Published {
            at,
            section: section.clone(),
            server,
            channel: String::from_utf8(channel).unwrap_or_else(|e| panic!("{e}")),
            payload,
        });
    }
    let spublish_lines = text.matches("\"SPUBLISH\"").count();
    assert!(spublish_lines > 0, "{file} holds no SPUBLISH");
    assert_eq!(
        published.len(),
        spublish_lines,
        "{file}: every SPUBLISH is read"
    );
    Capture {
        mode,
        uids,
        published,
    }
}

#[test]
fn every_captured_message_decodes_and_reencodes_byte_for_byte() {
    let mut kinds = std::collections::BTreeSet::new();
    let mut msgpack = 0;
    for (file, mode) in CAPTURES {
        let capture = load(file);
        assert_eq!(capture.mode, mode, "{file}: header's subscriptionMode");
        for published in &capture.published {
            let at = &published.at;
            let envelope = Envelope::decode(&published.payload)
                .unwrap_or_else(|e| panic!("{at} ({}): {e}", published.section));
            assert_eq!(
                Some(&envelope.uid),
                capture.uids.get(&published.server),
                "{at}: the sender's uid is its server's"
            );
            assert_eq!(envelope.nsp, "/", "{at}");
            let encoded = envelope.encode().unwrap_or_else(|e| panic!("{at}: {e}"));
            assert!(
                encoded == published.payload,
                "{at} ({}): re-encoded differently\n node: {}\n ours: {}",
                published.section,
                String::from_utf8_lossy(&published.payload),
                String::from_utf8_lossy(&encoded)
            );
            kinds.insert(envelope.message.kind());
            msgpack += usize::from(envelope.uses_msgpack());
        }
    }
    // Every type of the sharded wire is pinned by some capture, and so is msgpack.
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        (3..=12).collect::<Vec<i64>>()
    );
    assert!(msgpack >= 6, "binary broadcasts in each mode: {msgpack}");
}

#[test]
fn every_captured_message_went_where_route_sends_it() {
    let mut rooms_routed = 0;
    for (file, mode) in CAPTURES {
        let capture = load(file);
        // Answers go to the server that sent the request with their `requestId`.
        let mut requesters: HashMap<String, String> = HashMap::new();
        for published in &capture.published {
            let at = &published.at;
            let envelope =
                Envelope::decode(&published.payload).unwrap_or_else(|e| panic!("{at}: {e}"));
            let message = &envelope.message;
            if !message.is_answer()
                && let Some(id) = message.request_id()
            {
                requesters.insert(id.to_owned(), envelope.uid.clone());
            }
            let destination = route(message, mode);
            let requester = message
                .request_id()
                .and_then(|id| requesters.get(id))
                .map(String::as_str);
            if destination == Destination::Requester {
                assert!(
                    requester.is_some(),
                    "{at}: an answer to no captured request"
                );
            }
            let channels = ShardedChannels::new("socket.io", &envelope.nsp);
            assert_eq!(
                destination.channel(&channels, requester).as_deref(),
                Some(published.channel.as_str()),
                "{at} ({}, {mode}): {message:?}",
                published.section
            );
            rooms_routed += usize::from(matches!(destination, Destination::Room(_)));
            // And the one call a sender makes gives the same channel and Node's bytes.
            let out = publish(&channels, &envelope, mode, requester, |_| false)
                .unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(out.channel, published.channel, "{at}");
            assert_eq!(out.payload, published.payload, "{at}");
        }
    }
    // The dynamic modes' room channels are exercised, not only the main channel.
    assert!(rooms_routed >= 40, "room-channel publishes: {rooms_routed}");
}

/// Through the classic kinds and back, every captured message is Node's bytes again (only
/// `compress`, which the classic flags do not hold, is lost on the way).
#[test]
fn every_captured_message_maps_to_the_classic_kinds_and_back() {
    for (file, _) in CAPTURES {
        for published in load(file).published {
            let at = &published.at;
            let envelope = Envelope::decode(&published.payload).unwrap();
            let compress_set = matches!(
                &envelope.message,
                Message::Broadcast { opts, .. } if opts.flags.compress.is_some()
            );
            let back = match envelope.clone().into_classic() {
                ClassicForm::Broadcast(b) => {
                    Envelope::broadcast(&b.uid, &b.nsp, b.data, b.target, b.flags)
                }
                ClassicForm::Request(request) => Envelope::of_classic_request(request, "/")
                    .unwrap_or_else(|e| panic!("{at}: {e}")),
                ClassicForm::Response(response) => {
                    assert_eq!(
                        Some(response.request_id.as_str()),
                        envelope.message.request_id()
                    );
                    assert_eq!(response.uid.as_ref(), Some(&envelope.uid), "{at}");
                    continue;
                }
            };
            if compress_set {
                assert_ne!(back, envelope, "{at}");
                continue;
            }
            assert_eq!(back, envelope, "{at}");
            assert_eq!(back.encode().unwrap(), published.payload, "{at}");
        }
    }
}

/// Every captured message, as each of the three servers would take it: answers by the owner
/// of the response channel they came on, everything else by the other servers, nothing by
/// its sender.
#[test]
fn every_captured_message_is_taken_by_whom_node_delivers_it_to() {
    let channels = ShardedChannels::new("socket.io", "/");
    for (file, _) in CAPTURES {
        let capture = load(file);
        for published in &capture.published {
            let at = &published.at;
            for (server, uid) in &capture.uids {
                let received = receive(
                    &channels,
                    uid,
                    "/",
                    &published.channel,
                    &published.payload,
                    DEFAULT_MAX_ENVELOPE_BYTES,
                )
                .unwrap_or_else(|e| panic!("{at}: {e}"));
                let own_response = published.channel == channels.response(uid);
                let sender = *server == published.server;
                match received {
                    Received::Answer(_) => assert!(own_response || !sender, "{at} at {server}"),
                    Received::Broadcast(_) | Received::Request(_) => {
                        assert!(!sender && !own_response, "{at} at {server}")
                    }
                    Received::Ignored(IgnoreReason::OwnMessage) => assert!(sender, "{at}"),
                    Received::Ignored(other) => panic!("{at} at {server}: {other:?}"),
                }
                if own_response {
                    assert!(matches!(received, Received::Answer(_)), "{at} at {server}");
                }
            }
        }
    }
}

#[test]
fn captures_hold_what_the_docs_cite_of_them() {
    // docs/sharded-adapter.md 2.4: a socket-id room is on the main channel in `dynamic`
    // and on its own channel in `dynamic-private`.
    for (file, own_channel) in [("dynamic.txt", false), ("dynamic-private.txt", true)] {
        let capture = load(file);
        let direct = capture
            .published
            .iter()
            .find(|p| p.section == "broadcast-to-socket")
            .unwrap_or_else(|| panic!("{file}: no broadcast-to-socket publish"));
        let envelope = Envelope::decode(&direct.payload).unwrap();
        let Message::Broadcast { opts, .. } = &envelope.message else {
            panic!("{}: not a broadcast", direct.at)
        };
        assert_eq!(opts.target.rooms.len(), 1);
        assert_eq!(
            direct.channel == "socket.io#/#",
            !own_channel,
            "{}",
            direct.at
        );
    }
}

#[test]
fn monitor_quoting_is_undone_exactly() {
    assert_eq!(
        unquote(r#"\x84\xa4type\\\"\n\r\t\a\b/"#).unwrap(),
        b"\x84\xa4type\\\"\n\r\t\x07\x08/"
    );
    assert!(unquote(r"\x8").is_err());
    assert!(unquote(r"\q").is_err());
    assert_eq!(
        quoted_args(r#"  P3 A-pub  "SPUBLISH" "a\"b" "c""#).unwrap(),
        vec!["SPUBLISH", r#"a\"b"#, "c"]
    );
    assert!(quoted_args(r#" "open"#).is_err());
}

mod fuzz {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::{CAPTURES, load};
    use crate::sharded_wire::{Envelope, SubscriptionMode, route};

    fn payloads() -> &'static [Vec<u8>] {
        static PAYLOADS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        PAYLOADS.get_or_init(|| {
            CAPTURES
                .iter()
                .flat_map(|(file, _)| load(file).published)
                .map(|p| p.payload)
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Node's own messages with one byte changed and cut anywhere are values or errors.
        #[test]
        fn mutated_node_messages_never_panic(
            pick in any::<usize>(),
            index in any::<usize>(),
            byte in any::<u8>(),
            cut in any::<usize>(),
        ) {
            let all = payloads();
            let mut bytes = all[pick % all.len()].clone();
            let i = index % bytes.len();
            bytes[i] = byte;
            bytes.truncate(bytes.len() - cut % bytes.len());
            if let Ok(envelope) = Envelope::decode(&bytes) {
                let _ = route(&envelope.message, SubscriptionMode::DynamicPrivate);
                let _ = envelope.encode();
            }
        }
    }
}
