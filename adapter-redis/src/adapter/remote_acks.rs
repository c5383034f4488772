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
use crate::connection::Shared;
use crate::metrics::inc;
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
    pub(super) shared: Arc<Shared>,
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
                    inc(&s.shared.metrics.request_timeouts);
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
