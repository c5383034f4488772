//! The answers to this node's broadcasts with acks: each other node's client count, then one
//! message per client ack, until all arrived or the deadline passed.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, stream};
use socketioxide_core::Sid;
use socketioxide_core::adapter::AckStreamItem;
use tokio::sync::mpsc;

use super::values::wire_to_value;
use crate::metrics::{Metrics, inc};
use crate::msgpack::Wire;
use crate::namespace::PendingGuard;
use crate::wire::{self, Response};

pub(super) fn timeout_error<T: serde::de::DeserializeOwned>() -> Option<T> {
    // socketioxide's AckError (the emitter's error type) deserializes its `Timeout` variant
    // from this form; other emitters may not, in which case missing acks are just absent.
    serde_json::from_str("\"Timeout\"").ok()
}

pub(super) struct RemoteAcks {
    pub(super) rx: mpsc::Receiver<Response>,
    pub(super) _guard: PendingGuard,
    pub(super) metrics: Arc<Metrics>,
    pub(super) deadline: tokio::time::Instant,
    pub(super) expected_servers: usize,
    pub(super) answered: usize,
    pub(super) answered_uids: HashSet<String>,
    pub(super) acks_expected: u64,
    pub(super) acks_received: u64,
    pub(super) timed_out: bool,
}

pub(super) fn remote_ack_stream<Err: serde::de::DeserializeOwned + Send + 'static>(
    state: RemoteAcks,
) -> BoxStream<'static, AckStreamItem<Err>> {
    stream::unfold(state, |mut s| async move {
        loop {
            if s.timed_out {
                if s.acks_received < s.acks_expected {
                    s.acks_received += 1;
                    let err = timeout_error::<Err>()?;
                    return Some(((Sid::ZERO, Err(err)), s));
                }
                return None;
            }
            if s.answered >= s.expected_servers && s.acks_received >= s.acks_expected {
                return None;
            }
            match tokio::time::timeout_at(s.deadline, s.rx.recv()).await {
                Ok(Some(resp)) => match resp.kind() {
                    Some(wire::request_type::BROADCAST_CLIENT_COUNT) => {
                        if let Some(uid) = &resp.uid
                            && !s.answered_uids.insert(uid.clone())
                        {
                            continue;
                        }
                        s.answered += 1;
                        s.acks_expected += resp.client_count().unwrap_or(0);
                    }
                    Some(wire::request_type::BROADCAST_ACK) => {
                        s.acks_received += 1;
                        let first = resp.body.get("packet").cloned().unwrap_or(Wire::Nil);
                        let value = wire_to_value(&Wire::Array(vec![first]));
                        return Some(((Sid::ZERO, Ok(value)), s));
                    }
                    _ => continue,
                },
                Ok(None) | Err(_) => {
                    inc(&s.metrics.request_timeouts);
                    tracing::warn!(
                        servers = s.answered,
                        expected_servers = s.expected_servers,
                        acks = s.acks_received,
                        expected_acks = s.acks_expected,
                        "broadcast with acks incomplete at its deadline"
                    );
                    s.timed_out = true;
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::RedisAdapterConfig;
    use crate::locks::lock;
    use crate::namespace::NsCore;

    #[tokio::test(start_paused = true)]
    async fn acks_missing_at_the_deadline_end_the_stream_there_as_timeouts() {
        let core = Arc::new(NsCore::new(
            "socket.io",
            "/",
            "0123456789abcdef".into(),
            8,
            None,
        ));
        let (guard, rx) = core.register(&RedisAdapterConfig::default()).unwrap();
        let id = guard.id.clone();
        let peer = lock(&core.pending).get(&id).cloned().unwrap();
        let metrics = Arc::new(Metrics::default());
        let start = Instant::now();
        // The caller's ack timeout plus the request timeout.
        let wait = Duration::from_millis(300 + 1500);
        let state = RemoteAcks {
            rx,
            _guard: guard,
            metrics: metrics.clone(),
            deadline: start + wait,
            expected_servers: 1,
            answered: 0,
            answered_uids: HashSet::new(),
            acks_expected: 0,
            acks_received: 0,
            timed_out: false,
        };
        // The other node has two clients; one acks, the other never does.
        let count = wire::client_count_response(&id, 2, Some("peer"));
        peer.send(Response::decode(&count).unwrap()).await.unwrap();
        let ack = wire::broadcast_ack_response(&id, &Wire::Str("yes".into()), Some("peer"));
        peer.send(Response::decode(&ack).unwrap()).await.unwrap();

        let items: Vec<_> = remote_ack_stream::<serde_json::Value>(state)
            .collect()
            .await;
        assert_eq!(start.elapsed(), wait);
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(items[0].1.is_ok(), "{items:?}");
        assert_eq!(items[1].1, Err(serde_json::json!("Timeout")));
        assert_eq!(metrics.request_timeouts.load(Ordering::Relaxed), 1);
    }
}
