//! Per-namespace state that does not depend on socketioxide's emitter type: channel names,
//! pending requests, peers seen, and the cluster-wide request/answer collection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use socketioxide_core::Sid;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::channels::NamespaceChannels;
use crate::config::RedisAdapterConfig;
use crate::error::AdapterError;
use crate::join_fence::JoinFences;
use crate::locks::lock;
use crate::sharded_wire::{ShardedNs, SubscriptionMode};
use crate::wire::Response;

const MAX_PEERS: usize = 1024;
const PEER_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct NsCore {
    pub nsp: String,
    pub channels: NamespaceChannels,
    /// Set when the namespace speaks the sharded wire.
    pub sharded: Option<ShardedNs>,
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
    /// Classic mode: one pattern over every room channel instead of per-room subscriptions.
    pub classic_pattern: bool,
    /// Sharded `dynamic` modes: the join fence's period (zero: no fence).
    pub join_fence: Duration,
    /// The rooms this node announced joins to, fenced for [`Self::join_fence`].
    pub fences: Mutex<JoinFences>,
    /// Rooms joined by other nodes' requests, not subscribed yet, and when the join was
    /// applied: their subscription time is compared with the join fence (`join_fence_late`).
    /// Bounded by [`MAX_PENDING_REMOTE_JOINS`] (past it, joins are not measured).
    pub remote_joins: Mutex<HashMap<String, Instant>>,
}

/// Remote joins whose subscription time is measured at once.
pub(crate) const MAX_PENDING_REMOTE_JOINS: usize = 4096;

/// A caller waiting for room-channel subscriptions, served by the namespace task.
#[derive(Debug)]
pub(crate) struct SyncRequest {
    /// `None`: compare every room the local sockets hold with the subscriptions (cost grows
    /// with the sockets). `Some`: only make sure these rooms are subscribed (cost grows with
    /// the rooms named).
    pub rooms: Option<Vec<String>>,
    /// Rooms a disconnecting socket (the id) leaves: their channels are unsubscribed unless
    /// another local socket holds them.
    pub release: Option<(String, Vec<String>)>,
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
    pub(crate) fn new(
        key: &str,
        nsp: &str,
        uid: String,
        max_pending: usize,
        sharded: Option<SubscriptionMode>,
    ) -> Self {
        let channels = NamespaceChannels::new(key, nsp);
        let own_response = channels.response_for(&uid);
        let (sync_waiters, rx) = mpsc::channel(64);
        Self {
            nsp: nsp.to_owned(),
            channels,
            sharded: sharded.map(|mode| ShardedNs {
                channels: crate::channels::ShardedChannels::new(key, nsp),
                mode,
            }),
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
            classic_pattern: false,
            join_fence: Duration::ZERO,
            fences: Mutex::default(),
            remote_joins: Mutex::default(),
        }
    }

    /// Sets the subscription policy of the classic mode and the join fence of the sharded
    /// dynamic modes (each ignored by the other wire).
    pub(crate) fn with_policy(mut self, classic_pattern: bool, join_fence: Duration) -> Self {
        self.classic_pattern = classic_pattern && self.sharded.is_none();
        self.join_fence = if self
            .sharded
            .as_ref()
            .is_some_and(|s| s.mode.uses_room_channels())
        {
            join_fence
        } else {
            Duration::ZERO
        };
        self
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

    pub(crate) fn recent_rust_peers(&self) -> Vec<String> {
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
}
