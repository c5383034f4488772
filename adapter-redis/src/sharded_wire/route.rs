//! Which shard channel a message goes to (`docs/sharded-adapter.md`, section 2.4), as a pure
//! function of the message and the subscription mode.

use std::fmt;
use std::str::FromStr;

use super::message::Message;
use crate::channels::ShardedChannels;

/// Which room channels servers subscribe to, and so where single-room broadcasts go: Node's
/// `subscriptionMode` (`docs/sharded-adapter.md`, sections 2.4 and 2.5). Every server of a
/// cluster must use the same mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SubscriptionMode {
    /// The main channel and each server's response channel only: every broadcast on the main
    /// channel (order kept, no pub/sub scaling).
    Static,
    /// Plus one channel per public room (rooms that are not socket ids): Node's default.
    #[default]
    Dynamic,
    /// Plus one channel per room, socket-id rooms included.
    DynamicPrivate,
}

impl SubscriptionMode {
    /// Every mode, in the order of [`Self::as_str`]'s documentation.
    pub const ALL: [SubscriptionMode; 3] = [
        SubscriptionMode::Static,
        SubscriptionMode::Dynamic,
        SubscriptionMode::DynamicPrivate,
    ];

    /// The name Node's `subscriptionMode` option uses: `static`, `dynamic` or
    /// `dynamic-private`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionMode::Static => "static",
            SubscriptionMode::Dynamic => "dynamic",
            SubscriptionMode::DynamicPrivate => "dynamic-private",
        }
    }

    /// Whether room channels are used at all (the dynamic modes).
    pub fn uses_room_channels(self) -> bool {
        self != SubscriptionMode::Static
    }
}

impl fmt::Display for SubscriptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscription mode name that is none of `static`, `dynamic`, `dynamic-private`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown subscription mode `{0}`: expected static, dynamic or dynamic-private")]
pub struct UnknownSubscriptionMode(pub String);

impl FromStr for SubscriptionMode {
    type Err = UnknownSubscriptionMode;

    /// Parses Node's names exactly (lower case, as Node compares them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubscriptionMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| UnknownSubscriptionMode(s.to_owned()))
    }
}

/// Node's "looks like a socket id" test: a room whose length in UTF-16 code units (as
/// JavaScript counts a string's `length`) is 20. In `dynamic` mode such a room is not given a
/// channel of its own.
pub fn looks_like_a_socket_id(room: &str) -> bool {
    const NODE_SOCKET_ID_LEN: usize = 20;
    // Each UTF-8 byte is at most one UTF-16 unit, and 4 bytes make at least one: skip the
    // count for strings that cannot have 20 units.
    room.len() >= NODE_SOCKET_ID_LEN
        && room.len() <= 4 * NODE_SOCKET_ID_LEN
        && room.encode_utf16().count() == NODE_SOCKET_ID_LEN
}

/// Where a message goes, before it is named ([`Destination::channel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// The main channel `<key>#<nsp>#`.
    Main,
    /// The channel of this room (or socket id), `<key>#<nsp>#<room>#`.
    Room(&'a str),
    /// The response channel of the server that sent the request being answered.
    Requester,
}

impl Destination<'_> {
    /// The channel's name; `requester_uid` is the uid of the request's envelope and is
    /// needed only for [`Destination::Requester`] (`None` there without it).
    pub fn channel(
        &self,
        channels: &ShardedChannels,
        requester_uid: Option<&str>,
    ) -> Option<String> {
        match self {
            Destination::Main => Some(channels.main.clone()),
            Destination::Room(room) => Some(channels.room(room)),
            Destination::Requester => requester_uid.map(|uid| channels.response(uid)),
        }
    }
}

/// Where Node's sharded adapter publishes `message` in `mode` (section 2.4): a broadcast
/// without `requestId` to exactly one room goes to that room's channel in `dynamic` (unless
/// the room looks like a socket id) and in `dynamic-private`; answers go to the requester;
/// everything else to the main channel. Broadcasts with acks stay on the main channel because
/// the requester counts every server of the namespace, not only those holding the room.
pub fn route(message: &Message, mode: SubscriptionMode) -> Destination<'_> {
    if message.is_answer() {
        return Destination::Requester;
    }
    let Message::Broadcast {
        request_id: None,
        opts,
        ..
    } = message
    else {
        return Destination::Main;
    };
    let [room] = opts.target.rooms.as_slice() else {
        return Destination::Main;
    };
    let own_channel = match mode {
        SubscriptionMode::Static => false,
        SubscriptionMode::Dynamic => !looks_like_a_socket_id(room),
        SubscriptionMode::DynamicPrivate => true,
    };
    if own_channel {
        Destination::Room(room)
    } else {
        Destination::Main
    }
}

/// [`route`] with the gateway's join fence (`docs/sharded-adapter.md`, section 3): a broadcast
/// that [`route`] sends to the channel of a room this node announced a join to moments ago
/// (`fenced(room)`) goes to the main channel instead, behind the join on the same channel and
/// publisher connection, so every receiver applies the join first. Receivers in any mode,
/// Node's included, apply a main-channel broadcast with `rooms: [room]` the same way.
pub fn route_fenced<'a>(
    message: &'a Message,
    mode: SubscriptionMode,
    fenced: impl FnOnce(&str) -> bool,
) -> Destination<'a> {
    match route(message, mode) {
        Destination::Room(room) if fenced(room) => Destination::Main,
        destination => destination,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::Wire;
    use crate::sharded_wire::Opts;
    use crate::wire::Target;

    fn broadcast(rooms: &[&str], except: &[&str], request_id: Option<&str>) -> Message {
        Message::Broadcast {
            data: Wire::Array(vec![Wire::Str("ev".into())]),
            request_id: request_id.map(str::to_owned),
            opts: Opts::of(Target {
                rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
                except: except.iter().map(|r| (*r).to_owned()).collect(),
            }),
        }
    }

    #[test]
    fn modes_parse_from_nodes_names_and_print_back() {
        for mode in SubscriptionMode::ALL {
            assert_eq!(mode.as_str().parse::<SubscriptionMode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        assert_eq!(SubscriptionMode::default(), SubscriptionMode::Dynamic);
        for bad in ["", "Dynamic", "dynamic_private", "private", " static"] {
            let err = bad.parse::<SubscriptionMode>().unwrap_err();
            assert_eq!(err, UnknownSubscriptionMode(bad.to_owned()));
            assert!(
                err.to_string()
                    .contains("static, dynamic or dynamic-private")
            );
        }
    }

    #[test]
    fn socket_ids_are_twenty_utf16_units_as_javascript_counts_them() {
        assert!(looks_like_a_socket_id("t6NnwrlQGANncHSLAAAD"));
        assert!(!looks_like_a_socket_id("t6NnwrlQGANncHSLAAA"));
        assert!(!looks_like_a_socket_id("t6NnwrlQGANncHSLAAADx"));
        // A gateway socket id (16 characters) is a public room to Node's `dynamic` mode.
        assert!(!looks_like_a_socket_id("0123456789abcdef"));
        // 20 characters of two UTF-8 bytes each: 20 units in JavaScript.
        assert!(looks_like_a_socket_id(&"é".repeat(20)));
        // 10 characters outside the BMP: 20 units (surrogate pairs), 40 bytes.
        assert!(looks_like_a_socket_id(&"😀".repeat(10)));
        assert!(!looks_like_a_socket_id(&"😀".repeat(20)));
    }

    #[test]
    fn the_table_of_section_2_4() {
        use Destination::{Main, Room};
        use SubscriptionMode::{Dynamic, DynamicPrivate, Static};
        let sid = "t6NnwrlQGANncHSLAAAD";
        let cases: Vec<(Message, [Destination<'static>; 3])> = vec![
            (broadcast(&[], &[], None), [Main, Main, Main]),
            (
                broadcast(&["room1"], &[], None),
                [Main, Room("room1"), Room("room1")],
            ),
            (
                broadcast(&["room1", "room2"], &[], None),
                [Main, Main, Main],
            ),
            (broadcast(&[], &["room2"], None), [Main, Main, Main]),
            (
                broadcast(&["room1"], &["room2"], None),
                [Main, Room("room1"), Room("room1")],
            ),
            (broadcast(&[sid], &[], None), [Main, Main, Room(sid)]),
            (
                broadcast(&["room1"], &[], Some("5f5de9bd191da562")),
                [Main, Main, Main],
            ),
        ];
        for (message, want) in cases {
            for (mode, want) in [Static, Dynamic, DynamicPrivate].into_iter().zip(want) {
                assert_eq!(route(&message, mode), want, "{mode}: {message:?}");
            }
        }
    }

    #[test]
    fn a_fenced_room_is_broadcast_on_main_and_nothing_else_changes() {
        let to_room = broadcast(&["room:1"], &[], None);
        let to_all = broadcast(&[], &[], None);
        for mode in SubscriptionMode::ALL {
            assert_eq!(route_fenced(&to_room, mode, |_| true), Destination::Main);
            assert_eq!(
                route_fenced(&to_room, mode, |_| false),
                route(&to_room, mode)
            );
            assert_eq!(route_fenced(&to_all, mode, |_| true), Destination::Main);
        }
        // The fence is asked about the routed room only.
        let mut asked = None;
        route_fenced(&to_room, SubscriptionMode::Dynamic, |room| {
            asked = Some(room.to_owned());
            false
        });
        assert_eq!(asked.as_deref(), Some("room:1"));
        let answer = Message::BroadcastAck {
            request_id: "r".into(),
            packet: None,
        };
        assert_eq!(
            route_fenced(&answer, SubscriptionMode::Dynamic, |_| true),
            Destination::Requester
        );
    }

    #[test]
    fn requests_stay_on_main_and_answers_go_to_the_requester() {
        let opts = Opts::of(Target {
            rooms: vec!["room1".into()],
            except: vec![],
        });
        let requests = [
            Message::SocketsJoin {
                opts: opts.clone(),
                rooms: vec!["room3".into()],
            },
            Message::SocketsLeave {
                opts: opts.clone(),
                rooms: vec!["room3".into()],
            },
            Message::DisconnectSockets {
                opts: opts.clone(),
                close: false,
            },
            Message::FetchSockets {
                opts,
                request_id: "r".into(),
            },
            Message::ServerSideEmit {
                data: Wire::Array(vec![Wire::Str("ev".into())]),
                request_id: Some("r".into()),
            },
        ];
        let answers = [
            crate::test_support::one_socket_fetch_answer(None),
            Message::ServerSideEmitResponse {
                request_id: "r".into(),
                packet: None,
            },
            Message::BroadcastClientCount {
                request_id: "r".into(),
                client_count: 0,
            },
            Message::BroadcastAck {
                request_id: "r".into(),
                packet: Some(Wire::Int(1)),
            },
        ];
        let channels = ShardedChannels::new("socket.io", "/");
        for mode in SubscriptionMode::ALL {
            for request in &requests {
                assert_eq!(route(request, mode), Destination::Main, "{request:?}");
            }
            for answer in &answers {
                let destination = route(answer, mode);
                assert_eq!(destination, Destination::Requester, "{answer:?}");
                assert_eq!(
                    destination.channel(&channels, Some("8d5c3c2865859083")),
                    Some("socket.io#/#8d5c3c2865859083#".to_owned())
                );
                assert_eq!(destination.channel(&channels, None), None);
            }
        }
        assert_eq!(
            Destination::Room("room1").channel(&channels, None),
            Some("socket.io#/#room1#".to_owned())
        );
        assert_eq!(
            Destination::Main.channel(&channels, None),
            Some("socket.io#/#".to_owned())
        );
    }
}
