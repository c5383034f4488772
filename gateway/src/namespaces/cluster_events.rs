//! How a node reacts to the rest of the cluster: peers that die (their users go offline and
//! leave their rooms), control messages on `cluster:message` (bans, announcements, shutdowns),
//! and Redis coming back after an outage (the node re-registers what it holds).
//!
//! Nothing here runs on a single node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cluster::RoomRecord;
use cluster::bus::{ControlHandler, ServerShutdown, SystemAnnouncement, UserBanned};
use cluster::redis::{LocalMembership, LocalSnapshot, NodeEvent, NodeLeft};
use cluster::{Member, OnlineSocket};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::main_ns::{room_key, user_left, user_presence};
use super::{MAIN, Session, Shared, emit};

/// Records of rooms that this node's sockets joined, by room id. Entries for rooms without a
/// local member are dropped at each re-registration, so the map stays as small as the set of
/// rooms this node takes part in.
#[derive(Debug, Default)]
pub struct JoinedRooms(Mutex<HashMap<String, RoomRecord>>);

impl JoinedRooms {
    /// Remembers a room a local socket joined.
    pub fn remember(&self, room: &RoomRecord) {
        self.lock().insert(room.id.clone(), room.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomRecord>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The background tasks of cluster mode; they stop when this is dropped.
#[derive(Debug)]
pub struct ClusterReactions {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ClusterReactions {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts reacting to the cluster. Returns `None` on a single node.
///
/// First clears what a previous run under the same `serverId` left in Redis (and tells clients
/// about it), then follows dead peers, control messages and Redis reconnects.
pub async fn start(shared: &Arc<Shared>) -> Option<ClusterReactions> {
    let redis = shared.app.link.redis()?;
    match redis.purge_own_leftovers().await {
        Ok(left) => announce_departures(shared, &left).await,
        Err(e) => tracing::warn!(error = %e, "cannot clear a previous run's leftovers"),
    }
    let mut tasks = Vec::new();

    let (monitor, mut events) = redis.start_monitor();
    let for_monitor = Arc::clone(shared);
    tasks.push(tokio::spawn(async move {
        let _monitor = monitor;
        while let Some(event) = events.recv().await {
            match event {
                NodeEvent::NodeJoined { server_id } => {
                    tracing::info!(peer = %server_id, "node joined the cluster");
                }
                NodeEvent::NodeLeft(left) => {
                    tracing::info!(
                        peer = %left.server_id,
                        purged_here = left.purged_here,
                        offline = left.went_offline.len(),
                        memberships = left.purged.len(),
                        "node left the cluster"
                    );
                    if left.purged_here {
                        announce_departures(&for_monitor, &left).await;
                    }
                }
            }
        }
    }));

    tasks.push(redis.bus().spawn_handler(Arc::new(ControlReactions {
        shared: Arc::clone(shared),
    })));

    let mut reconnects = redis.reconnects();
    let for_resync = Arc::clone(shared);
    tasks.push(tokio::spawn(async move {
        while reconnects.changed().await.is_ok() {
            resync(&for_resync).await;
        }
    }));
    Some(ClusterReactions { tasks })
}

/// Tells the clients about the users and memberships a departed node took with it:
/// `user offline` to everyone, `user left` to each room.
async fn announce_departures(shared: &Shared, left: &NodeLeft) {
    let Some(main) = shared.io.of(MAIN) else {
        return;
    };
    for socket in &left.went_offline {
        let payload = user_presence(&socket.user_id, &socket.username);
        let _ = emit::broadcast(shared, main.clone(), "user offline", &payload).await;
    }
    for p in &left.purged {
        let m = &p.member;
        let payload = user_left(
            &m.socket_id,
            &m.user_id,
            &m.username,
            &p.room_id,
            p.user_count,
        );
        let _ = emit::broadcast(
            shared,
            main.clone().to(room_key(&p.room_id)),
            "user left",
            &payload,
        )
        .await;
    }
}

/// What this node holds on `/`: its sockets and their room memberships.
fn local_snapshot(shared: &Shared) -> LocalSnapshot {
    let mut snapshot = LocalSnapshot::default();
    let Some(main) = shared.io.of(MAIN) else {
        return snapshot;
    };
    let node_id = shared.app.server_id.clone();
    let mut records = shared.joined_rooms.lock();
    let mut still_joined = HashMap::new();
    for socket in main.local().sockets() {
        let Some(session) = Session::of(&socket) else {
            continue;
        };
        let socket_id = socket.id.to_string();
        snapshot.sockets.push(OnlineSocket {
            user_id: session.user_id().to_owned(),
            username: session.username(),
            socket_id: socket_id.clone(),
            node_id: node_id.clone(),
        });
        for room in socket.rooms() {
            let Some(room_id) = room.strip_prefix("room:") else {
                continue;
            };
            let Some(record) = records.get(room_id) else {
                continue;
            };
            still_joined.insert(room_id.to_owned(), record.clone());
            snapshot.memberships.push(LocalMembership {
                room: record.clone(),
                member: Member {
                    socket_id: socket_id.clone(),
                    user_id: session.user_id().to_owned(),
                    username: session.username(),
                    node_id: node_id.clone(),
                },
            });
        }
    }
    *records = still_joined;
    snapshot
}

/// Makes Redis hold exactly what this node holds again (after Redis came back, possibly empty).
async fn resync(shared: &Shared) {
    let Some(redis) = shared.app.link.redis() else {
        return;
    };
    let snapshot = local_snapshot(shared);
    match redis.resync(&snapshot).await {
        Ok(report) => tracing::info!(
            sockets = report.sockets,
            memberships = report.memberships,
            rooms_recreated = report.rooms_recreated,
            "re-registered this node's state after a Redis reconnect"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot re-register this node's state yet"),
    }
}

/// Reactions to control messages from other nodes.
struct ControlReactions {
    shared: Arc<Shared>,
}

#[async_trait]
impl ControlHandler for ControlReactions {
    async fn user_banned(&self, from: &str, ban: UserBanned) {
        tracing::info!(peer = from, user = %ban.user_id, "ban from another node");
        let app = &self.shared.app;
        if let Err(e) =
            crate::actions::enforce_ban_locally(app, &self.shared.io, &ban.user_id, &ban.reason)
                .await
        {
            tracing::warn!(error = %e, user = %ban.user_id, "cannot enforce a ban locally");
        }
    }

    async fn system_announcement(&self, from: &str, announcement: SystemAnnouncement) {
        let Some(main) = self.shared.io.of(MAIN) else {
            return;
        };
        let mut payload = announcement.extra.clone();
        payload.insert("message".to_owned(), Value::String(announcement.message));
        payload
            .entry("from".to_owned())
            .or_insert_with(|| Value::String(from.to_owned()));
        let _ = emit::broadcast(
            self.shared.as_ref(),
            main.local(),
            "system_announcement",
            &Value::Object(payload),
        )
        .await;
    }

    async fn server_shutdown(&self, from: &str, shutdown: ServerShutdown) {
        tracing::info!(peer = from, message = ?shutdown.message, "a node is shutting down");
    }
}
