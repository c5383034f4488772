//! How a node reacts to the rest of the cluster: peers that die (their users go offline and
//! leave their rooms), control messages on `cluster:message` (bans, announcements, shutdowns),
//! and Redis coming back after an outage (the node re-registers what it holds).
//!
//! Nothing here runs on a single node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cluster::RoomRecord;
use cluster::bus::{ControlHandler, ServerShutdown, SystemAnnouncement, UserBanned};
use cluster::redis::{LocalMembership, LocalSnapshot, NodeEvent, NodeLeft};
use cluster::{Member, OnlineSocket};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::main_ns::{user_left, user_presence};
use super::{ALL, MAIN, Session, Shared, emit};
use crate::protocol::rooms::{chat_room, chat_room_id};

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

    /// Forgets a room once no local socket is in it, so joining and leaving rooms cannot grow
    /// the map. `in_use` is asked under the map's lock: a socket that joins meanwhile (it joins,
    /// then remembers) either is seen by it or remembers the room again after.
    pub fn forget_unless(&self, room_id: &str, in_use: impl FnOnce() -> bool) {
        let mut records = self.lock();
        if !in_use() {
            records.remove(room_id);
        }
    }

    /// Rooms remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no room is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    tasks.push(tokio::spawn(follow_redis(
        Arc::clone(shared),
        redis.reconnects(),
    )));
    Some(ClusterReactions { tasks })
}

/// How often a node reloads the bans from Redis (so unbans made through other nodes leave its
/// book, and a notice it missed still disconnects the user).
const BAN_REFRESH: Duration = Duration::from_secs(30);

/// Longest wait between two attempts to re-register after a reconnect.
const MAX_RESYNC_DELAY: Duration = Duration::from_secs(5);

/// Learns every ban at start-up, then after each reconnect re-registers what the node holds
/// (bans included) until it succeeds, and reloads the bans every [`BAN_REFRESH`]; each time, the
/// local users among the bans in force are disconnected.
async fn follow_redis(shared: Arc<Shared>, mut reconnects: watch::Receiver<u64>) {
    retry_until_done(&shared, "learn the cluster's bans", sync_bans).await;
    let mut refresh = tokio::time::interval(BAN_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            changed = reconnects.changed() => {
                if changed.is_err() {
                    return;
                }
                retry_until_done(&shared, "re-register this node's state", resync).await;
            }
            _ = refresh.tick() => {
                if let Err(e) = sync_bans(&shared).await {
                    tracing::warn!(error = %e, "cannot reload the bans");
                }
            }
        }
    }
}

/// Runs `step` until it succeeds, backing off from 250 ms to [`MAX_RESYNC_DELAY`].
async fn retry_until_done<F>(shared: &Shared, what: &str, step: F)
where
    F: AsyncFn(&Shared) -> Result<(), cluster::StateError>,
{
    let mut delay = Duration::from_millis(250);
    loop {
        match step(shared).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot {what} yet");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RESYNC_DELAY);
    }
}

/// Agrees with Redis on the bans (writing back those Redis lost) and disconnects the local
/// sockets of every banned user.
async fn sync_bans(shared: &Shared) -> Result<(), cluster::StateError> {
    let Some(redis) = shared.app.link.redis() else {
        return Ok(());
    };
    let sync = redis.sync_bans().await?;
    enforce_bans(shared, &sync.active).await;
    Ok(())
}

/// Disconnects the sockets this node holds of any user among `bans`.
async fn enforce_bans(shared: &Shared, bans: &[cluster::Ban]) {
    if bans.is_empty() {
        return;
    }
    let mut held = HashSet::new();
    for ns in ALL {
        if let Some(op) = shared.io.of(ns) {
            for socket in op.local().sockets() {
                if let Some(session) = Session::of(&socket) {
                    held.insert(session.user_id().to_owned());
                }
            }
        }
    }
    for ban in bans.iter().filter(|b| held.contains(&b.user_id)) {
        tracing::info!(user = %ban.user_id, "disconnecting a banned user found after a resync");
        if let Err(e) =
            crate::actions::enforce_ban_locally(&shared.app, &shared.io, &ban.user_id, &ban.reason)
                .await
        {
            tracing::warn!(error = %e, user = %ban.user_id, "cannot enforce a ban locally");
        }
    }
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
            main.clone().to(chat_room(&p.room_id)),
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
            let Some(room_id) = chat_room_id(&room) else {
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

/// Makes Redis hold exactly what this node holds again (after Redis came back, possibly empty):
/// presence, memberships and the bans it knows; then disconnects local users banned meanwhile
/// (a `user_banned` notice published while this node was cut off never reached it).
async fn resync(shared: &Shared) -> Result<(), cluster::StateError> {
    let Some(redis) = shared.app.link.redis() else {
        return Ok(());
    };
    let snapshot = local_snapshot(shared);
    let report = redis.resync(&snapshot).await?;
    tracing::info!(
        sockets = report.sockets,
        memberships = report.memberships,
        rooms_recreated = report.rooms_recreated,
        "re-registered this node's state after a Redis reconnect"
    );
    sync_bans(shared).await
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
        if let Some(redis) = app.link.redis() {
            // Known here too, so this node can write it back should Redis lose it.
            redis.remember_ban(cluster::Ban {
                user_id: ban.user_id.clone(),
                reason: ban.reason.clone(),
                banned_by: ban.banned_by.clone().unwrap_or_else(|| from.to_owned()),
                created_at: chrono::Utc::now(),
                expires_at: ban.expires_at,
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_rooms_forget_rooms_no_local_socket_is_in() {
        let rooms = JoinedRooms::default();
        for id in ["a", "b"] {
            rooms.remember(&cluster::test_support::room(id, 5));
        }
        rooms.forget_unless("a", || true);
        assert_eq!(rooms.len(), 2, "a room still in use is kept");
        rooms.forget_unless("a", || false);
        rooms.forget_unless("b", || false);
        assert!(rooms.is_empty());
    }
}
