//! The dead-node monitor: which peers are alive, and the clean-up after one dies.
//!
//! Every `interval` the monitor lists the nodes from their stats keys; every liveness period (a
//! second by default) it reads the liveness key of each of them with one `MGET`. A node that has
//! been seen writing a liveness key, or whose stats record declares one (`livenessTtlMs`), is
//! alive exactly while that key exists, so a killed node is
//! noticed within the liveness TTL (seconds), not the stats TTL (a minute). Nodes that never wrote
//! one (Node.js nodes of the original design) are alive while their stats key exists or they were
//! heard on the control bus within one stats TTL. A node that was alive and is no longer, or that
//! announced `server_shutdown`, is gone: the monitor takes the purge claim (`SET NX PX`) and, only
//! if it won, removes the node's presence, memberships and stats record, reports what it removed,
//! and leaves a marker by which the node, should it only have stalled, re-registers itself. Nodes that hold state
//! in Redis without a stats key (they died while this node was not watching) are purged the same
//! way once they have been seen so for a whole stats TTL, which leaves a starting or re-registering
//! node time to write its stats key.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backends::RedisBackends;
use super::conn::{Conn, state_error};
use super::tasks::Tasks;
use crate::bus::{ControlEvent, ControlSubscription};
use crate::error::StateResult;
use crate::lock::lock;
use crate::state::{OnlineSocket, Presence, PurgedMembership, RoomRegistry};
use crate::stats::NodeRegistry as _;

/// Settings of the monitor.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// How often the live nodes are listed (default 5 s).
    pub interval: Duration,
    /// How long a purge claim stays (default 60 s); another node may purge the same id again only
    /// after it lapses.
    pub claim_ttl: Duration,
    /// Capacity of the event queue (default 256).
    pub queue: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            claim_ttl: Duration::from_secs(60),
            queue: 256,
        }
    }
}

/// A node that is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLeft {
    /// Its `serverId`.
    pub server_id: String,
    /// Whether this node won the claim and purged it. Only then are the lists filled, and only
    /// then should the gateway emit `user offline` / `user left` (exactly one node does).
    pub purged_here: bool,
    /// One socket per user who went offline with it (their last socket was there).
    pub went_offline: Vec<OnlineSocket>,
    /// Memberships removed from rooms (for `user left`).
    pub purged: Vec<PurgedMembership>,
}

/// What the monitor reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A peer appeared.
    NodeJoined {
        /// Its `serverId`.
        server_id: String,
    },
    /// A peer is gone.
    NodeLeft(NodeLeft),
}

/// The node's own timings the monitor judges its peers by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// TTL of the stats keys.
    pub(crate) stats_ttl: Duration,
    /// How often liveness keys are written, and read.
    pub(crate) liveness_every: Duration,
}

/// Handle of the running monitor; the monitor stops when it is dropped.
#[derive(Debug)]
pub struct NodeMonitor {
    stop: CancellationToken,
    peers: Arc<Mutex<BTreeSet<String>>>,
    rounds: Arc<AtomicU64>,
}

impl Drop for NodeMonitor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl NodeMonitor {
    // Each argument comes from a different part of the connection; a struct only to carry them
    // here would add a name and no meaning.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        tasks: &Tasks,
        self_id: String,
        config: MonitorConfig,
        timing: Timing,
        conn: Conn,
        backends: RedisBackends,
        bus: ControlSubscription,
        reconnects: watch::Receiver<u64>,
    ) -> (Self, mpsc::Receiver<NodeEvent>) {
        let Timing {
            stats_ttl,
            liveness_every,
        } = timing;
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let peers = Arc::new(Mutex::new(BTreeSet::new()));
        let rounds = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            rounds: rounds.clone(),
            self_id,
            config,
            stats_ttl,
            conn,
            backends,
            events: tx,
            peers: peers.clone(),
            known: HashSet::new(),
            departed: HashMap::new(),
            heard: HashMap::new(),
            orphan_candidates: HashMap::new(),
            liveness_every,
            liveness_seen: HashSet::new(),
            buried: HashSet::new(),
            records: Vec::new(),
            last_scan: None,
            settled: false,
            last_sweep: None,
        };
        let (stop, _) = tasks.spawn_stoppable(worker.run(bus, reconnects));
        (
            Self {
                stop,
                peers,
                rounds,
            },
            rx,
        )
    }

    /// How many rounds the monitor has finished (failed ones included). Lets a caller wait for
    /// the monitor to have looked again, rather than for a length of time.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Acquire)
    }

    /// The peers (other nodes) the monitor currently believes alive, sorted.
    pub fn live_peers(&self) -> Vec<String> {
        lock(&self.peers).iter().cloned().collect()
    }
}

struct Worker {
    self_id: String,
    config: MonitorConfig,
    stats_ttl: Duration,
    conn: Conn,
    backends: RedisBackends,
    events: mpsc::Sender<NodeEvent>,
    peers: Arc<Mutex<BTreeSet<String>>>,
    /// Rounds finished, shared with [`NodeMonitor::rounds`].
    rounds: Arc<AtomicU64>,
    /// Live peers.
    known: HashSet<String>,
    /// Peers that announced shutdown, with when: a record of that id started before then is the
    /// old process's leftover key, not a return.
    departed: HashMap<String, DateTime<Utc>>,
    /// When each peer was last heard on the control bus.
    heard: HashMap<String, Instant>,
    /// Nodes seen holding state without a stats key, with when that was first seen.
    orphan_candidates: HashMap<String, Instant>,
    /// How often liveness keys are read.
    liveness_every: Duration,
    /// Nodes seen writing a liveness key, or whose stats record declares one: for them, that key
    /// alone says alive or dead.
    liveness_seen: HashSet<String>,
    /// Nodes this node never knew alive whose liveness key it found gone, already handed to
    /// [`Worker::node_gone`]: not handed again while their stats key lingers.
    buried: HashSet<String>,
    /// Stats records of the last scan, with when it ran.
    records: Vec<(String, Option<crate::stats::NodeStats>)>,
    last_scan: Option<Instant>,
    /// False until the first round after start or after a reconnect: that round only learns.
    settled: bool,
    /// When the keyspace was last swept for orphaned node state.
    last_sweep: Option<Instant>,
}

impl Worker {
    async fn run(mut self, mut bus: ControlSubscription, mut reconnects: watch::Receiver<u64>) {
        let mut tick = tokio::time::interval(self.liveness_every.min(self.config.interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bus_open = true;
        let mut reconnects_open = true;
        loop {
            tokio::select! {
                biased;
                changed = reconnects.changed(), if reconnects_open => {
                    if changed.is_err() {
                        reconnects_open = false;
                    } else {
                        // Redis may have lost every key: relearn quietly before judging anyone.
                        self.settled = false;
                        self.orphan_candidates.clear();
                        self.last_scan = None;
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.round(&reconnects).await {
                        tracing::warn!(error = %e, "node monitor round failed");
                    }
                    self.rounds.fetch_add(1, Ordering::Release);
                }
                msg = bus.recv(), if bus_open => match msg {
                    Some(msg) => {
                        let from = msg.server_id.clone();
                        if let ControlEvent::ServerShutdown(_) = msg.event {
                            tracing::info!(server_id = %from, "peer announced shutdown");
                            self.known.remove(&from);
                            self.departed.insert(from.clone(), Utc::now());
                            self.heard.remove(&from);
                            self.publish_peers();
                            // A draining node still holds its sockets until its drain ends, and its
                            // own disconnect handlers then remove them: it is dropped from the live
                            // set now, but nothing of it is purged. Whatever it fails to clean up
                            // is swept as orphaned state once its key is gone for a full TTL.
                            self.emit(NodeEvent::NodeLeft(NodeLeft {
                                server_id: from,
                                purged_here: false,
                                went_offline: Vec::new(),
                                purged: Vec::new(),
                            }))
                            .await;
                        } else {
                            self.heard.insert(from.clone(), Instant::now());
                            if !self.departed.contains_key(&from) && self.known.insert(from.clone()) {
                                self.publish_peers();
                                self.emit(NodeEvent::NodeJoined { server_id: from }).await;
                            }
                        }
                    }
                    None => bus_open = false,
                },
            }
        }
    }

    fn publish_peers(&self) {
        let mut peers = lock(&self.peers);
        *peers = self.known.iter().cloned().collect();
    }

    async fn emit(&self, event: NodeEvent) {
        // Back-pressure, not loss: when the gateway is slow the monitor waits. A dropped receiver
        // means nobody listens any more; purging goes on regardless.
        let _ = self.events.send(event).await;
    }

    async fn round(&mut self, reconnects: &watch::Receiver<u64>) -> StateResult<()> {
        let now = Instant::now();
        if self
            .last_scan
            .is_none_or(|at| now.duration_since(at) >= self.config.interval)
        {
            self.records = self.backends.nodes.scan_records().await?;
            self.last_scan = Some(now);
        }
        if reconnects.has_changed().unwrap_or(false) {
            // These answers may come from a Redis that just restarted empty.
            self.settled = false;
        }
        let present: HashSet<&str> = self.records.iter().map(|(id, _)| id.as_str()).collect();
        // A departed node's entry is kept while its old key lingers, then forgotten.
        self.departed.retain(|id, _| present.contains(id.as_str()));
        let ttl = self.stats_ttl;
        self.heard.retain(|_, at| now.duration_since(*at) < ttl);
        let mut with_stats: HashSet<String> = HashSet::new();
        for (id, record) in &self.records {
            if *id == self.self_id {
                continue;
            }
            if let Some(announced) = self.departed.get(id) {
                match record {
                    // A new process under the same id.
                    Some(r) if r.started_at > *announced => {
                        self.departed.remove(id);
                    }
                    _ => continue,
                }
            }
            if record.as_ref().is_some_and(|r| r.liveness_ttl_ms.is_some()) {
                // It writes a liveness key: a node that died before this one ever read that key
                // (killed right after it started, or while this node was starting) is dead
                // as soon as the key lapses, not alive until its stats key expires.
                self.liveness_seen.insert(id.clone());
            }
            with_stats.insert(id.clone());
        }
        // Everyone who might be alive: by stats key, by the bus, or alive at the last look.
        let mut candidates: Vec<String> = with_stats
            .iter()
            .chain(self.heard.keys())
            .chain(self.known.iter())
            .filter(|id| **id != self.self_id && !self.departed.contains_key(*id))
            .cloned()
            .collect();
        candidates.sort();
        candidates.dedup();
        let alive = self.read_liveness(&candidates).await?;
        self.liveness_seen.extend(alive.iter().cloned());
        let live: HashSet<String> = candidates
            .into_iter()
            .filter(|id| {
                alive.contains(id)
                    || (!self.liveness_seen.contains(id)
                        && (with_stats.contains(id) || self.heard.contains_key(id)))
            })
            .collect();

        let joined: Vec<String> = live.difference(&self.known).cloned().collect();
        let left: Vec<String> = self.known.difference(&live).cloned().collect();
        self.buried
            .retain(|id| with_stats.contains(id) && !alive.contains(id));
        let mut strangers: Vec<String> = with_stats
            .iter()
            .filter(|id| {
                self.liveness_seen.contains(*id)
                    && !alive.contains(*id)
                    && !self.known.contains(*id)
                    && !self.buried.contains(*id)
            })
            .cloned()
            .collect();
        strangers.sort();
        let settled = self.settled;
        self.known = live;
        self.settled = true;
        self.publish_peers();
        for id in joined {
            self.emit(NodeEvent::NodeJoined { server_id: id }).await;
        }
        if settled {
            for id in left {
                tracing::info!(server_id = %id, "peer's liveness (or stats) key is gone");
                self.node_gone(&id, true).await?;
            }
            for id in strangers {
                tracing::info!(server_id = %id, "a node that writes a liveness key has none");
                self.buried.insert(id.clone());
                self.node_gone(&id, false).await?;
            }
        }
        // Orphans must go unclaimed for a whole TTL anyway, and the sweep walks the keyspace:
        // a quarter of the TTL between sweeps delays a purge by that much at most.
        let sweep_every = self.config.interval.max(self.stats_ttl / 4);
        let due = self.last_sweep.is_none_or(|at| at.elapsed() >= sweep_every);
        if !settled || due {
            self.last_sweep = Some(Instant::now());
            self.sweep_orphans(settled).await?;
        }
        Ok(())
    }

    /// Which of `ids` have a liveness key now (one `MGET`).
    async fn read_liveness(&self, ids: &[String]) -> StateResult<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        self.conn.ensure_connected()?;
        let keys: Vec<String> = ids.iter().map(|id| self.conn.keys.alive(id)).collect();
        // Spread over slots, one GET each (sent together); under one tag, one MGET.
        let values: Vec<Option<String>> = self.conn.get_each(keys).await?;
        Ok(ids
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_some())
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn sweep_orphans(&mut self, settled: bool) -> StateResult<()> {
        let keys = self.conn.scan_keys(&self.conn.keys.node_pattern()).await?;
        let holders: HashSet<String> = keys
            .iter()
            .filter_map(|k| self.conn.keys.node_id_of_key(k))
            .filter(|id| *id != self.self_id && !self.known.contains(id.as_ref()))
            .map(std::borrow::Cow::into_owned)
            .collect();
        let now = Instant::now();
        self.orphan_candidates.retain(|id, _| holders.contains(id));
        for id in &holders {
            self.orphan_candidates.entry(id.clone()).or_insert(now);
        }
        if !settled {
            return Ok(());
        }
        // A live node writes its stats key within one refresh interval, well inside the TTL; one
        // whole TTL without a key means it is dead, not just starting or re-registering.
        let ttl = self.stats_ttl;
        let orphans: Vec<String> = self
            .orphan_candidates
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in orphans {
            tracing::info!(server_id = %id, "node holds state but has had no stats key for a TTL");
            self.orphan_candidates.remove(&id);
            self.node_gone(&id, false).await?;
        }
        Ok(())
    }

    /// Purges a gone node if this node wins the claim. A peer this node knew is reported either
    /// way; leftovers of a node it never knew only when it purged them.
    async fn node_gone(&mut self, server_id: &str, was_peer: bool) -> StateResult<()> {
        self.conn.ensure_connected()?;
        if self.liveness_seen.contains(server_id) {
            // Looked at again just before acting: a beat may have landed since the round's read.
            let back: Option<String> = self
                .conn
                .client
                .get(self.conn.keys.alive(server_id))
                .await
                .map_err(|e| state_error(&e))?;
            if back.is_some() {
                tracing::info!(server_id, "peer's liveness key is back: not purged");
                self.known.insert(server_id.to_owned());
                self.publish_peers();
                return Ok(());
            }
        }
        let claim_ms = i64::try_from(self.config.claim_ttl.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let claimed: Option<String> = self
            .conn
            .client
            .set(
                self.conn.keys.purge_claim(server_id),
                self.self_id.clone(),
                Some(Expiration::PX(claim_ms)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| state_error(&e))?;
        let mut left = NodeLeft {
            server_id: server_id.to_owned(),
            purged_here: claimed.is_some(),
            went_offline: Vec::new(),
            purged: Vec::new(),
        };
        if left.purged_here {
            left.purged = self.backends.rooms.purge_node(server_id).await?;
            left.went_offline = self.backends.presence.purge_node(server_id).await?;
            // Out of /cluster/stats now rather than when its stats TTL runs out.
            self.backends.nodes.withdraw(server_id).await?;
            // After the purge, so that a node that was only stalled re-registers after it, not
            // before (its heartbeat takes the marker and resyncs).
            let _: Value = self
                .conn
                .client
                .set(
                    self.conn.keys.purged_marker(server_id),
                    self.self_id.clone(),
                    Some(Expiration::PX(claim_ms)),
                    None,
                    false,
                )
                .await
                .map_err(|e| state_error(&e))?;
            tracing::info!(
                server_id,
                offline = left.went_offline.len(),
                memberships = left.purged.len(),
                "purged a dead node"
            );
        }
        if was_peer || left.purged_here {
            self.emit(NodeEvent::NodeLeft(left)).await;
        }
        Ok(())
    }
}
