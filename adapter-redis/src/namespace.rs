//! Per-namespace state that does not depend on socketioxide's emitter type: channel names,
//! pending requests, peers seen, and the cluster-wide request/answer collection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use socketioxide_core::Sid;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::Gathered;
use crate::channels::NamespaceChannels;
use crate::config::RedisAdapterConfig;
use crate::connection::Shared;
use crate::error::{AdapterError, MissingResponses};
use crate::locks::lock;
use crate::metrics::inc;
use crate::wire::{Request, Response};

const MAX_PEERS: usize = 1024;
const PEER_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct NsCore {
    pub nsp: String,
    pub channels: NamespaceChannels,
    pub uid: String,
    pub own_response: String,
    pub pending: Mutex<HashMap<String, mpsc::Sender<Response>>>,
    pub peers: Mutex<HashMap<String, Instant>>,
    pub subscribed_rooms: Mutex<HashSet<String>>,
    /// Rooms named by [`crate::RedisAdapterCtr::sync_rooms_with`]: kept subscribed while they
    /// have a member whose socket is not connected yet (the periodic check only sees connected
    /// sockets). Dropped once every member is connected (it holds the room) or none is left.
    pub pinned_rooms: Mutex<HashSet<String>>,
    pub sync_now: Notify,
    pub sync_waiters: mpsc::Sender<SyncRequest>,
    pub sync_waiters_rx: Mutex<Option<mpsc::Receiver<SyncRequest>>>,
    pub local_view: OnceLock<Weak<dyn LocalView>>,
    /// Set by `close`: the namespace task stops.
    pub closed: std::sync::atomic::AtomicBool,
    /// Bounds the broadcast-with-ack requests of other nodes answered at once.
    pub ack_answers: Arc<tokio::sync::Semaphore>,
}

/// A caller waiting for room-channel subscriptions, served by the namespace task.
#[derive(Debug)]
pub(crate) struct SyncRequest {
    /// `None`: compare every room the local sockets hold with the subscriptions (cost grows
    /// with the sockets). `Some`: only make sure these rooms are subscribed (cost grows with
    /// the rooms named).
    pub rooms: Option<Vec<String>>,
    /// Answered once the subscriptions are in place.
    pub done: oneshot::Sender<()>,
}

/// What the constructor handle needs from a namespace's local adapter, without its
/// emitter type.
pub(crate) trait LocalView: Send + Sync + std::fmt::Debug {
    /// Every room local sockets are in.
    fn local_rooms(&self) -> Vec<String>;
    /// Ids of all local sockets.
    fn local_socket_ids(&self) -> Vec<String>;
}

/// Removes a pending request when the waiter goes away (done, timed out or cancelled).
#[derive(Debug)]
pub(crate) struct PendingGuard {
    core: Arc<NsCore>,
    pub id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.core.pending).remove(&self.id);
    }
}

impl NsCore {
    pub(crate) fn new(key: &str, nsp: &str, uid: String, max_pending: usize) -> Self {
        let channels = NamespaceChannels::new(key, nsp);
        let own_response = channels.response_for(&uid);
        let (sync_waiters, rx) = mpsc::channel(64);
        Self {
            nsp: nsp.to_owned(),
            channels,
            uid,
            own_response,
            pending: Mutex::default(),
            peers: Mutex::default(),
            subscribed_rooms: Mutex::default(),
            pinned_rooms: Mutex::default(),
            sync_now: Notify::new(),
            sync_waiters,
            sync_waiters_rx: Mutex::new(Some(rx)),
            local_view: OnceLock::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            ack_answers: Arc::new(tokio::sync::Semaphore::new(max_pending.max(1))),
        }
    }

    pub(crate) fn local_view(&self) -> Option<Arc<dyn LocalView>> {
        self.local_view.get().and_then(Weak::upgrade)
    }

    /// Remembers a peer uid seen in traffic (bounded; stale entries are pruned when full).
    pub(crate) fn saw_peer(&self, uid: &str) {
        if uid == self.uid || uid == "emitter" || uid.is_empty() {
            return;
        }
        let mut peers = lock(&self.peers);
        if peers.len() >= MAX_PEERS && !peers.contains_key(uid) {
            let now = Instant::now();
            peers.retain(|_, seen| now.duration_since(*seen) < PEER_TTL);
            if peers.len() >= MAX_PEERS {
                return;
            }
        }
        peers.insert(uid.to_owned(), Instant::now());
    }

    fn recent_rust_peers(&self) -> Vec<String> {
        let now = Instant::now();
        lock(&self.peers)
            .iter()
            // Peers of this adapter always sign their answers; Node peers never do, so only the
            // former can be named when silent.
            .filter(|(uid, seen)| uid.len() == 16 && now.duration_since(**seen) < PEER_TTL)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// The response channel for answering a request from `uid` (its own channel, as Node's
    /// `publishOnSpecificResponseChannel` does; the shared one when the requester is unknown).
    pub(crate) fn response_channel_for(&self, uid: Option<&str>) -> String {
        match uid {
            Some(uid) if !uid.is_empty() => self.channels.response_for(uid),
            _ => self.channels.response.clone(),
        }
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        config: &RedisAdapterConfig,
    ) -> Result<(PendingGuard, mpsc::Receiver<Response>), AdapterError> {
        let (tx, rx) = mpsc::channel(config.max_responses_per_request.max(1));
        let id = Sid::new().to_string();
        let mut pending = lock(&self.pending);
        if pending.len() >= config.max_pending_requests {
            return Err(AdapterError::TooManyPendingRequests(pending.len()));
        }
        pending.insert(id.clone(), tx);
        drop(pending);
        Ok((
            PendingGuard {
                core: self.clone(),
                id,
            },
            rx,
        ))
    }

    /// Other nodes subscribed to this namespace's request channel.
    pub(crate) async fn remote_server_count(&self, shared: &Shared) -> Result<usize, AdapterError> {
        let n = shared.numsub(&self.channels.request).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX).saturating_sub(1))
    }

    /// Publishes the request `build` makes from this node's uid and a fresh request id, and
    /// collects one answer per other node, de-duplicated per responder uid, until all arrived
    /// or the request timeout passed.
    pub(crate) async fn gather(
        self: &Arc<Self>,
        shared: &Shared,
        operation: &'static str,
        build: impl FnOnce(String, String) -> Request,
    ) -> Result<Gathered<Vec<Response>>, AdapterError> {
        let expected = self.remote_server_count(shared).await?;
        if expected == 0 {
            return Ok(Gathered {
                value: Vec::new(),
                missing: None,
            });
        }
        let (guard, mut rx) = self.register(&shared.config)?;
        let request = build(self.uid.clone(), guard.id.clone());
        shared
            .publish(self.channels.request.clone(), request.encode())
            .await?;
        let started = Instant::now();
        let deadline = crate::adapter::deadline_in(shared.config.request_timeout);
        let (answers, answered) = collect_answers(&mut rx, expected, deadline).await;
        drop(guard);
        let missing = (answers.len() < expected).then(|| {
            inc(&shared.metrics.request_timeouts);
            let silent_peers: Vec<String> = self
                .recent_rust_peers()
                .into_iter()
                .filter(|p| !answered.contains(p))
                .collect();
            let missing = MissingResponses {
                operation,
                expected,
                received: answers.len(),
                silent_peers,
                waited: started.elapsed(),
            };
            tracing::warn!(nsp = %self.nsp, %missing, "cluster request incomplete");
            missing
        });
        Ok(Gathered {
            value: answers,
            missing,
        })
    }
}

/// One answer per responder (de-duplicated by the uid this adapter's peers sign with; Node
/// peers do not sign) until `expected` answered, the senders are gone or `deadline` passed.
async fn collect_answers(
    rx: &mut mpsc::Receiver<Response>,
    expected: usize,
    deadline: tokio::time::Instant,
) -> (Vec<Response>, HashSet<String>) {
    let mut answers = Vec::with_capacity(expected);
    let mut answered: HashSet<String> = HashSet::new();
    while answers.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(resp)) => {
                if let Some(uid) = &resp.uid
                    && !answered.insert(uid.clone())
                {
                    continue;
                }
                answers.push(resp);
            }
            Ok(None) | Err(_) => break,
        }
    }
    (answers, answered)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn answer(uid: Option<&str>) -> Response {
        let uid = uid.map(|u| format!(r#","uid":"{u}""#)).unwrap_or_default();
        Response::decode(format!(r#"{{"requestId":"r","rooms":[]{uid}}}"#).as_bytes()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_stalls_the_collection_exactly_until_the_deadline() {
        let (tx, mut rx) = mpsc::channel(8);
        let start = Instant::now();
        let timeout = Duration::from_millis(1500);
        tx.send(answer(Some("peer-a"))).await.unwrap();
        // The same peer twice counts once; the second expected peer never answers.
        tx.send(answer(Some("peer-a"))).await.unwrap();
        let (answers, answered) = collect_answers(&mut rx, 2, start + timeout).await;
        assert_eq!(answers.len(), 1);
        assert_eq!(answered, HashSet::from(["peer-a".to_owned()]));
        assert_eq!(start.elapsed(), timeout);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn the_collection_ends_as_soon_as_every_peer_answered() {
        let (tx, mut rx) = mpsc::channel(8);
        let start = Instant::now();
        tx.send(answer(Some("peer-a"))).await.unwrap();
        // Node peers do not sign their answers: each counts.
        tx.send(answer(None)).await.unwrap();
        let (answers, _) = collect_answers(&mut rx, 2, start + Duration::from_secs(60)).await;
        assert_eq!(answers.len(), 2);
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(tx);
    }
}
