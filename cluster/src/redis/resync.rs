//! Re-registering a node's state after Redis lost it (a restart, an outage, or peers that purged
//! a stalled node), and clearing a previous run's leftovers at start-up.

use std::sync::atomic::Ordering;

use super::RedisCluster;
use super::conn::encode;
use super::monitor::NodeLeft;
use super::scripts;
use crate::bans::BanSync;
use crate::error::StateResult;
use crate::nodes::NodeRegistry;
use crate::presence::Presence;
use crate::rooms::RoomRegistry;
use crate::state::{Member, OnlineSocket, RoomRecord};

/// One room membership a node holds, for [`RedisCluster::resync`].
#[derive(Clone, Debug)]
pub struct LocalMembership {
    /// The room as this node knows it (recreated from this when Redis lost it).
    pub room: RoomRecord,
    /// The member (its `node_id` is replaced by the resyncing node's id).
    pub member: Member,
}

/// What a node holds locally: its connected sockets of `/` and their room memberships.
#[derive(Clone, Debug, Default)]
pub struct LocalSnapshot {
    /// Sockets connected to this node (`node_id` is replaced by the resyncing node's id).
    pub sockets: Vec<OnlineSocket>,
    /// Room memberships of those sockets.
    pub memberships: Vec<LocalMembership>,
}

/// What a resync wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResyncReport {
    /// Sockets registered in presence.
    pub sockets: usize,
    /// Memberships registered.
    pub memberships: usize,
    /// Rooms that Redis no longer had and that were recreated from the node's records.
    pub rooms_recreated: usize,
    /// Whether the node's stats record was republished.
    pub stats_republished: bool,
    /// Whether peers had purged this node since the previous resync (it stalled or was cut
    /// off while Redis stayed up): they told every client that its users went offline and left
    /// their rooms, so the gateway announces the users it still holds as online again.
    pub purged_by_peers: bool,
}

impl RedisCluster {
    /// Makes Redis hold exactly what this node holds: republishes the last stats record, then
    /// replaces this node's presence and memberships with `snapshot` in one atomic script
    /// (recreating rooms Redis lost, deleting rooms left empty). Call it after every reconnect
    /// and once at start-up (with an empty snapshot it clears a previous run's leftovers).
    pub async fn resync(&self, snapshot: &LocalSnapshot) -> StateResult<ResyncReport> {
        let purged_by_peers = self.purged_by_peers.swap(false, Ordering::SeqCst);
        let result = self.register_again(snapshot).await;
        match result {
            Ok(report) => {
                let report = ResyncReport {
                    purged_by_peers,
                    ..report
                };
                tracing::info!(?report, "re-registered this node's state in Redis");
                Ok(report)
            }
            Err(e) => {
                // Not registered again yet: the next attempt must still report the purge.
                if purged_by_peers {
                    self.purged_by_peers.store(true, Ordering::SeqCst);
                }
                Err(e)
            }
        }
    }

    async fn register_again(&self, snapshot: &LocalSnapshot) -> StateResult<ResyncReport> {
        let node = &self.config.node_id;
        let mut stats_republished = false;
        if let Some(mut stats) = self.backends.nodes.last_published() {
            stats.last_seen = chrono::Utc::now();
            self.backends.nodes.publish(&stats).await?;
            stats_republished = true;
        }
        if self.conn.keys.is_spread() {
            let (sockets, memberships, rooms_recreated) = self.resync_spread(snapshot).await?;
            let report = ResyncReport {
                sockets,
                memberships,
                rooms_recreated,
                stats_republished,
                purged_by_peers: false,
            };
            return Ok(report);
        }
        let k = &self.conn.keys;
        let mut args = vec![
            k.prefix().to_owned(),
            node.clone(),
            snapshot.sockets.len().to_string(),
        ];
        for s in &snapshot.sockets {
            let mut s = s.clone();
            s.node_id.clone_from(node);
            args.push(s.socket_id.clone());
            args.push(s.user_id.clone());
            args.push(encode(&s)?);
        }
        for m in &snapshot.memberships {
            let mut member = m.member.clone();
            member.node_id.clone_from(node);
            args.push(m.room.id.clone());
            args.push(encode(&m.room)?);
            args.push(m.room.max_users.to_string());
            args.push(member.socket_id.clone());
            args.push(encode(&member)?);
        }
        let r: Vec<i64> = self
            .conn
            .eval(
                &scripts::RESYNC_NODE,
                vec![
                    k.presence_sockets(),
                    k.node_sockets(node),
                    k.node_memberships(node),
                    k.rooms_index(),
                    k.order_counter(),
                ],
                args,
            )
            .await?;
        let at =
            |i: usize| usize::try_from(r.get(i).copied().unwrap_or_default()).unwrap_or_default();
        let report = ResyncReport {
            sockets: at(0),
            memberships: at(1),
            rooms_recreated: at(2),
            stats_republished,
            purged_by_peers: false,
        };
        Ok(report)
    }

    /// Makes Redis and this node agree on the bans (see [`crate::bans::RedisBans::sync`]): bans Redis lost are
    /// written back, and the node learns every ban in force. Call it at start-up, after every
    /// reconnect and periodically; then disconnect the local users among [`BanSync::active`].
    pub async fn sync_bans(&self) -> StateResult<BanSync> {
        self.backends.bans.sync().await
    }

    /// Records a ban announced by another node (`user_banned`), so this node can write it back
    /// should Redis lose it.
    pub fn remember_ban(&self, ban: crate::state::Ban) {
        self.backends.bans.remember(ban);
    }

    /// The bans in force this node knows of.
    pub fn known_bans(&self) -> Vec<crate::state::Ban> {
        self.backends.bans.known()
    }

    /// Removes what a previous process under this node's id left in Redis (peers do not see a
    /// restart within the stats TTL as a death, so nobody else cleans it up). Call once at start-up,
    /// before accepting sockets, and emit `user offline` / `user left` for what it reports.
    pub async fn purge_own_leftovers(&self) -> StateResult<NodeLeft> {
        let node = &self.config.node_id;
        let purged = self.backends.rooms.purge_node(node).await?;
        let went_offline = self.backends.presence.purge_node(node).await?;
        if !purged.is_empty() || !went_offline.is_empty() {
            tracing::info!(
                memberships = purged.len(),
                offline = went_offline.len(),
                "removed a previous run's leftovers"
            );
        }
        Ok(NodeLeft {
            server_id: node.clone(),
            purged_here: true,
            went_offline,
            purged,
        })
    }
}
