//! Per-node statistics records and the registry of live nodes, with the in-memory backend
//! ([`MemoryNodes`]) and the Redis one ([`RedisNodes`]: `cluster:stats:<serverId>` keys) side
//! by side.

mod memory;
mod redis;

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use memory::MemoryNodes;
pub use redis::RedisNodes;

use crate::error::StateResult;

/// Connections a node holds, per namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceConnections {
    /// Sockets on `/`.
    pub main: u64,
    /// Sockets on `/chat`.
    pub chat: u64,
    /// Sockets on `/game`.
    pub game: u64,
    /// Sockets on `/admin`.
    pub admin: u64,
}

impl NamespaceConnections {
    /// All sockets of the node.
    pub fn total(&self) -> u64 {
        self.main + self.chat + self.game + self.admin
    }
}

/// What one node carries, or (in [`crate::ClusterTotals`]) all live nodes together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// Sockets held, per namespace.
    pub connections: NamespaceConnections,
    /// All sockets held (sum of `connections`).
    pub total_connections: u64,
    /// Socket.IO rooms with at least one local member (summed over nodes, a room spread over
    /// several counts once per node).
    pub rooms: u64,
    /// Events received from clients.
    pub messages_in: u64,
    /// Events sent to clients.
    pub messages_out: u64,
    /// Resident memory, in bytes (0 where it cannot be read).
    pub rss_bytes: u64,
}

impl Load {
    /// Adds `other` to this load.
    pub fn add(&mut self, other: &Load) {
        let (c, o) = (&mut self.connections, &other.connections);
        c.main += o.main;
        c.chat += o.chat;
        c.game += o.game;
        c.admin += o.admin;
        self.total_connections += other.total_connections;
        self.rooms += other.rooms;
        self.messages_in += other.messages_in;
        self.messages_out += other.messages_out;
        self.rss_bytes += other.rss_bytes;
    }
}

/// One node's record, as stored under `cluster:stats:<serverId>` and served by `/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's id in the cluster.
    pub server_id: String,
    /// Host name of the machine or pod.
    pub hostname: String,
    /// Gateway version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// What the node carries (in the record's top level, as the original design wrote it).
    #[serde(flatten)]
    pub load: Load,
    /// When the node started.
    pub started_at: DateTime<Utc>,
    /// When this record was written.
    pub last_seen: DateTime<Utc>,
    /// TTL of the node's liveness key, in milliseconds, when the node writes one. The Redis
    /// registry fills it in once the node's first liveness beat has landed; peers then judge the
    /// node by that key alone, even if they never saw it while it was alive. Absent in records of
    /// Node.js nodes of the original design, which are judged by their stats key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_ttl_ms: Option<u64>,
}

/// Where nodes publish their records and learn which nodes are alive.
#[async_trait]
pub trait NodeRegistry: Send + Sync + Debug {
    /// Publishes (or refreshes) this node's record.
    async fn publish(&self, stats: &NodeStats) -> StateResult<()>;
    /// Removes this node's record (on graceful shutdown).
    async fn withdraw(&self, server_id: &str) -> StateResult<()>;
    /// The records of every live node, sorted by `server_id`.
    async fn live_nodes(&self) -> StateResult<Vec<NodeStats>>;
}
