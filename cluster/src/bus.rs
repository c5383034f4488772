//! The control bus on `cluster:message`: typed events between nodes.
//!
//! Wire shape (kept from the original Node.js design so its nodes can listen too):
//! `{ "serverId": "...", "event": "user_banned" | "system_announcement" | "server_shutdown",
//!    "data": {...}, "timestamp": "<RFC 3339>" }`.
//! A node ignores its own messages; an unknown event or a malformed message is logged and
//! counted, never fatal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::broadcast;

/// Event name of a ban.
pub const EVENT_USER_BANNED: &str = "user_banned";
/// Event name of an announcement.
pub const EVENT_SYSTEM_ANNOUNCEMENT: &str = "system_announcement";
/// Event name of a node shutting down.
pub const EVENT_SERVER_SHUTDOWN: &str = "server_shutdown";

/// `data` of `user_banned`: every node disconnects that user's sockets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserBanned {
    /// The banned user.
    pub user_id: String,
    /// Why (shown to the user).
    #[serde(default)]
    pub reason: String,
    /// Who banned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_by: Option<String>,
    /// When the ban lapses; `None` is permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `data` of `system_announcement`: every node tells its `/` sockets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemAnnouncement {
    /// The text.
    pub message: String,
    /// Any further fields a sender included, passed on to clients unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `data` of `server_shutdown`: the sending node is going away; peers treat it as gone at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerShutdown {
    /// Optional human-readable text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Any further fields a sender included.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One control event, typed. Its serde form is the wire's `event` / `data` pair (adjacently
/// tagged), so the event names are spelled once, here, and decoding picks the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum ControlEvent {
    /// `user_banned`.
    #[serde(rename = "user_banned", serialize_with = "as_sorted_object")]
    UserBanned(UserBanned),
    /// `system_announcement`.
    #[serde(rename = "system_announcement", serialize_with = "as_sorted_object")]
    SystemAnnouncement(SystemAnnouncement),
    /// `server_shutdown`.
    #[serde(rename = "server_shutdown", serialize_with = "as_sorted_object")]
    ServerShutdown(ServerShutdown),
}

/// Every event name [`ControlEvent`] knows (a unit test holds it to the enum's serde names).
pub const EVENT_NAMES: [&str; 3] = [
    EVENT_USER_BANNED,
    EVENT_SYSTEM_ANNOUNCEMENT,
    EVENT_SERVER_SHUTDOWN,
];

/// Writes `data` as a JSON object with its keys sorted, whatever the struct's field order or its
/// flattened extra fields: the bytes peers have always received.
fn as_sorted_object<T: Serialize, S: serde::Serializer>(
    data: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde_json::to_value(data)
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}

impl ControlEvent {
    /// The wire name of the event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UserBanned(_) => EVENT_USER_BANNED,
            Self::SystemAnnouncement(_) => EVENT_SYSTEM_ANNOUNCEMENT,
            Self::ServerShutdown(_) => EVENT_SERVER_SHUTDOWN,
        }
    }
}

/// The JSON envelope as published.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Outgoing<'a> {
    server_id: &'a str,
    #[serde(flatten)]
    event: &'a ControlEvent,
    timestamp: String,
}

/// The JSON envelope as received: the event is decoded once the sender is known not to be this
/// node, and an unknown name is told apart from bad data.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    server_id: String,
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    timestamp: Value,
}

/// Encodes an event from `server_id` as the JSON published on `cluster:message`.
pub fn encode_message(
    server_id: &str,
    event: &ControlEvent,
    at: DateTime<Utc>,
) -> serde_json::Result<String> {
    serde_json::to_string(&Outgoing {
        server_id,
        event,
        timestamp: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// A control event received from another node.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedControl {
    /// The sending node.
    pub server_id: String,
    /// When it was sent (RFC 3339 string or epoch milliseconds on the wire), if readable.
    pub timestamp: Option<DateTime<Utc>>,
    /// The event.
    pub event: ControlEvent,
}

/// What one raw message on the control channel turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// A known event from another node.
    Event(ReceivedControl),
    /// This node's own message (ignored).
    Own,
    /// A well-formed envelope with an event this node does not know.
    Unknown {
        /// The sender.
        server_id: String,
        /// The unknown event name.
        event: String,
    },
    /// Not a readable envelope, or a known event with unreadable data.
    Malformed(String),
}

fn parse_timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    }
}

/// Decodes one raw message received on the control channel by node `own_id`.
pub fn decode_message(raw: &str, own_id: &str) -> Decoded {
    let env: Incoming = match serde_json::from_str(raw) {
        Ok(env) => env,
        Err(e) => return Decoded::Malformed(format!("not a control envelope: {e}")),
    };
    if env.server_id == own_id {
        return Decoded::Own;
    }
    if !EVENT_NAMES.contains(&env.event.as_str()) {
        return Decoded::Unknown {
            server_id: env.server_id,
            event: env.event,
        };
    }
    // A sender may leave `data` out (or null) where every field is optional.
    let data = if env.data.is_null() {
        Value::Object(Map::new())
    } else {
        env.data
    };
    let name = env.event.clone();
    let mut tagged = Map::new();
    tagged.insert("event".to_owned(), Value::String(env.event));
    tagged.insert("data".to_owned(), data);
    match serde_json::from_value::<ControlEvent>(Value::Object(tagged)) {
        Ok(event) => Decoded::Event(ReceivedControl {
            server_id: env.server_id,
            timestamp: parse_timestamp(&env.timestamp),
            event,
        }),
        Err(e) => Decoded::Malformed(format!("bad data for `{name}`: {e}")),
    }
}

/// Counters of the control bus, shared by its reader and every subscription.
#[derive(Debug, Default)]
pub struct BusCounters {
    /// Messages published by this node.
    pub published: AtomicU64,
    /// Known events received from other nodes.
    pub received: AtomicU64,
    /// This node's own messages, ignored.
    pub ignored_own: AtomicU64,
    /// Envelopes with an unknown event.
    pub unknown_events: AtomicU64,
    /// Messages that could not be decoded.
    pub malformed: AtomicU64,
    /// Events a slow subscription missed (its queue overflowed; oldest dropped first).
    pub subscriber_lagged: AtomicU64,
    /// Pub/sub messages fred's own hand-off queue dropped before this crate saw them.
    pub transport_lagged: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BusCountersSnapshot {
    /// See [`BusCounters::published`].
    pub published: u64,
    /// See [`BusCounters::received`].
    pub received: u64,
    /// See [`BusCounters::ignored_own`].
    pub ignored_own: u64,
    /// See [`BusCounters::unknown_events`].
    pub unknown_events: u64,
    /// See [`BusCounters::malformed`].
    pub malformed: u64,
    /// See [`BusCounters::subscriber_lagged`].
    pub subscriber_lagged: u64,
    /// See [`BusCounters::transport_lagged`].
    pub transport_lagged: u64,
}

impl BusCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> BusCountersSnapshot {
        BusCountersSnapshot {
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            ignored_own: self.ignored_own.load(Ordering::Relaxed),
            unknown_events: self.unknown_events.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            subscriber_lagged: self.subscriber_lagged.load(Ordering::Relaxed),
            transport_lagged: self.transport_lagged.load(Ordering::Relaxed),
        }
    }

    /// Counts one raw message after decoding, logs what is not an event, and returns the event.
    pub(crate) fn account(&self, decoded: Decoded) -> Option<ReceivedControl> {
        match decoded {
            Decoded::Event(ev) => {
                self.received.fetch_add(1, Ordering::Relaxed);
                Some(ev)
            }
            Decoded::Own => {
                self.ignored_own.fetch_add(1, Ordering::Relaxed);
                None
            }
            Decoded::Unknown { server_id, event } => {
                self.unknown_events.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%server_id, %event, "unknown control event ignored");
                None
            }
            Decoded::Malformed(why) => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%why, "malformed control message ignored");
                None
            }
        }
    }
}

/// A receiver of control events from other nodes.
///
/// Queue: a bounded broadcast queue per subscription (capacity set in the configuration).
/// Overflow policy: a subscription that falls behind loses the oldest events; the loss is counted
/// in [`BusCounters::subscriber_lagged`] and logged, and receiving continues.
#[derive(Debug)]
pub struct ControlSubscription {
    pub(crate) rx: broadcast::Receiver<ReceivedControl>,
    pub(crate) counters: Arc<BusCounters>,
}

impl ControlSubscription {
    /// The next event; `None` once the bus is shut down.
    pub async fn recv(&mut self) -> Option<ReceivedControl> {
        loop {
            match self.rx.recv().await {
                Ok(ev) => return Some(ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.counters
                        .subscriber_lagged
                        .fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(missed = n, "control subscription fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ReceivedControl> {
        loop {
            match self.rx.try_recv() {
                Ok(ev) => return Some(ev),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.counters
                        .subscriber_lagged
                        .fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(missed = n, "control subscription fell behind");
                }
                Err(_) => return None,
            }
        }
    }
}

/// Typed handling of control events; every method defaults to doing nothing.
#[async_trait::async_trait]
pub trait ControlHandler: Send + Sync {
    /// Another node banned a user.
    async fn user_banned(&self, _from: &str, _ban: UserBanned) {}
    /// Another node published an announcement.
    async fn system_announcement(&self, _from: &str, _announcement: SystemAnnouncement) {}
    /// Another node is shutting down.
    async fn server_shutdown(&self, _from: &str, _shutdown: ServerShutdown) {}
}

/// Calls the handler's method for each event of the subscription until the bus shuts down.
pub async fn dispatch(mut subscription: ControlSubscription, handler: Arc<dyn ControlHandler>) {
    while let Some(msg) = subscription.recv().await {
        match msg.event {
            ControlEvent::UserBanned(d) => handler.user_banned(&msg.server_id, d).await,
            ControlEvent::SystemAnnouncement(d) => {
                handler.system_announcement(&msg.server_id, d).await;
            }
            ControlEvent::ServerShutdown(d) => handler.server_shutdown(&msg.server_id, d).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The instant every golden message is stamped with.
    fn golden_at() -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_764_100_000_123).unwrap()
    }

    /// Encodes `event` as node `node-a` at [`golden_at`].
    fn golden(event: ControlEvent) -> String {
        encode_message("node-a", &event, golden_at()).unwrap()
    }

    // The bytes below are what a node publishes on `cluster:message` (Node.js nodes of the
    // original design read them): envelope keys in this order, `data` keys sorted, timestamp in
    // RFC 3339 with milliseconds. Any change to them is a wire change, not a refactor.

    #[test]
    fn golden_user_banned() {
        let expires = Utc.timestamp_millis_opt(1_764_200_000_000).unwrap();
        assert_eq!(
            golden(ControlEvent::UserBanned(UserBanned {
                user_id: "u-1".into(),
                reason: "spam \"links\"".into(),
                banned_by: Some("admin".into()),
                expires_at: Some(expires),
            })),
            r#"{"serverId":"node-a","event":"user_banned","data":{"bannedBy":"admin","expiresAt":"2025-11-26T23:33:20Z","reason":"spam \"links\"","userId":"u-1"},"timestamp":"2025-11-25T19:46:40.123Z"}"#
        );
        assert_eq!(
            golden(ControlEvent::UserBanned(UserBanned {
                user_id: "u-2".into(),
                reason: String::new(),
                banned_by: None,
                expires_at: None,
            })),
            r#"{"serverId":"node-a","event":"user_banned","data":{"reason":"","userId":"u-2"},"timestamp":"2025-11-25T19:46:40.123Z"}"#
        );
    }

    #[test]
    fn golden_system_announcement() {
        let mut extra = Map::new();
        extra.insert("priority".into(), Value::from("high"));
        extra.insert("author".into(), Value::from("ops"));
        assert_eq!(
            golden(ControlEvent::SystemAnnouncement(SystemAnnouncement {
                message: "maintenance at 02:00".into(),
                extra,
            })),
            r#"{"serverId":"node-a","event":"system_announcement","data":{"author":"ops","message":"maintenance at 02:00","priority":"high"},"timestamp":"2025-11-25T19:46:40.123Z"}"#
        );
        assert_eq!(
            golden(ControlEvent::SystemAnnouncement(SystemAnnouncement {
                message: "hi".into(),
                extra: Map::new(),
            })),
            r#"{"serverId":"node-a","event":"system_announcement","data":{"message":"hi"},"timestamp":"2025-11-25T19:46:40.123Z"}"#
        );
    }

    #[test]
    fn golden_server_shutdown() {
        assert_eq!(
            golden(ControlEvent::ServerShutdown(ServerShutdown::default())),
            r#"{"serverId":"node-a","event":"server_shutdown","data":{},"timestamp":"2025-11-25T19:46:40.123Z"}"#
        );
        let mut extra = Map::new();
        extra.insert("reason".into(), Value::from("deploy"));
        assert_eq!(
            golden(ControlEvent::ServerShutdown(ServerShutdown {
                message: Some("Server is shutting down".into()),
                extra,
            })),
            r#"{"serverId":"node-a","event":"server_shutdown","data":{"message":"Server is shutting down","reason":"deploy"},"timestamp":"2025-11-25T19:46:40.123Z"}"#
        );
    }

    #[test]
    fn event_names_are_the_enums_serde_names() {
        let events = [
            ControlEvent::UserBanned(UserBanned {
                user_id: "u".into(),
                reason: String::new(),
                banned_by: None,
                expires_at: None,
            }),
            ControlEvent::SystemAnnouncement(SystemAnnouncement {
                message: "m".into(),
                extra: Map::new(),
            }),
            ControlEvent::ServerShutdown(ServerShutdown::default()),
        ];
        let names: Vec<String> = events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, EVENT_NAMES);
        for e in &events {
            assert_eq!(serde_json::to_value(e).unwrap()["event"], e.name());
        }
    }

    #[test]
    fn round_trip_of_each_event() {
        let at = Utc::now();
        let events = [
            ControlEvent::UserBanned(UserBanned {
                user_id: "u1".into(),
                reason: "spam".into(),
                banned_by: Some("admin".into()),
                expires_at: None,
            }),
            ControlEvent::SystemAnnouncement(SystemAnnouncement {
                message: "hello".into(),
                extra: Map::new(),
            }),
            ControlEvent::ServerShutdown(ServerShutdown::default()),
        ];
        for ev in events {
            let raw = encode_message("a", &ev, at).unwrap();
            let v: Value = serde_json::from_str(&raw).unwrap();
            assert_eq!(v["serverId"], "a");
            assert_eq!(v["event"], ev.name());
            assert!(v["timestamp"].is_string());
            assert_eq!(decode_message(&raw, "a"), Decoded::Own);
            match decode_message(&raw, "b") {
                Decoded::Event(got) => {
                    assert_eq!(got.server_id, "a");
                    assert_eq!(got.event, ev);
                    let ts = got.timestamp.unwrap();
                    assert!((ts - at).num_milliseconds().abs() <= 1);
                }
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    #[test]
    fn node_js_shapes_are_accepted() {
        let raw = r#"{"serverId":"node-js-1","event":"system_announcement",
            "data":{"message":"hi","priority":"high"},"timestamp":1764100000000}"#;
        let Decoded::Event(got) = decode_message(raw, "me") else {
            panic!("not decoded")
        };
        let ControlEvent::SystemAnnouncement(a) = got.event else {
            panic!("wrong event")
        };
        assert_eq!(a.message, "hi");
        assert_eq!(a.extra["priority"], "high");
        assert!(got.timestamp.is_some());
        let raw = r#"{"serverId":"n","event":"server_shutdown","timestamp":"x"}"#;
        assert!(matches!(
            decode_message(raw, "me"),
            Decoded::Event(ReceivedControl {
                event: ControlEvent::ServerShutdown(_),
                timestamp: None,
                ..
            })
        ));
        let raw = r#"{"serverId":"n","event":"user_banned","data":{"userId":"u","reason":"r"}}"#;
        assert!(matches!(decode_message(raw, "me"), Decoded::Event(_)));
    }

    #[test]
    fn unknown_and_malformed_are_reported_not_fatal() {
        let raw = r#"{"serverId":"n","event":"reboot_everything","data":{}}"#;
        assert_eq!(
            decode_message(raw, "me"),
            Decoded::Unknown {
                server_id: "n".into(),
                event: "reboot_everything".into()
            }
        );
        assert!(matches!(
            decode_message("not json", "me"),
            Decoded::Malformed(_)
        ));
        assert!(matches!(
            decode_message(r#"{"serverId":"n","event":"user_banned","data":{}}"#, "me"),
            Decoded::Malformed(_)
        ));
        let counters = BusCounters::default();
        assert!(counters.account(decode_message(raw, "me")).is_none());
        assert!(counters.account(Decoded::Own).is_none());
        assert!(counters.account(Decoded::Malformed("x".into())).is_none());
        let s = counters.snapshot();
        assert_eq!((s.unknown_events, s.ignored_own, s.malformed), (1, 1, 1));
    }
}
