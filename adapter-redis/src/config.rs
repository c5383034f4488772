//! Adapter configuration.

use std::time::Duration;

use crate::sharded_wire::SubscriptionMode;

/// Which wire of Node's `@socket.io/redis-adapter` the adapter speaks. Every node of a cluster
/// must agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdapterMode {
    /// `createAdapter`: `PUBLISH`/`SUBSCRIBE`, request and response channels.
    #[default]
    Classic,
    /// `createShardedAdapter` (Redis 7 or later): `SPUBLISH`/`SSUBSCRIBE`, one main channel
    /// per namespace, in this subscription mode (`docs/sharded-adapter.md`, sections 2.4, 2.5
    /// and 4.3).
    Sharded(SubscriptionMode),
}

/// Classic mode only: how a node receives single-room broadcasts (`docs/sharded-adapter.md`,
/// section "Subscription policies of the classic mode").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClassicSubscriptions {
    /// One channel per room a local socket holds, subscribed before the join returns. A node
    /// receives only the traffic of rooms it holds, but a broadcast another node publishes
    /// right after a remote `socketsJoin` can pass before the subscription it causes.
    #[default]
    PerRoom,
    /// One pattern over every room channel of the namespace (`PSUBSCRIBE <key>#<nsp>#*`, as
    /// Node's classic adapter does): every node receives every room broadcast (those for rooms
    /// it does not hold are dropped before decoding and counted in `unheld_room_messages`),
    /// and a remote `socketsJoin` followed by a broadcast arrives in order.
    Pattern,
}

/// Settings of a connected adapter. Every queue and map the adapter keeps is bounded by one of
/// these numbers.
#[derive(Debug, Clone)]
pub struct RedisAdapterConfig {
    /// Channel prefix, `opts.key` of the Node adapter. All nodes of a cluster must agree.
    /// Default `socket.io`.
    pub key: String,
    /// How long `fetch_sockets`, `rooms`, `server_side_emit_with_ack` wait for other nodes,
    /// and the extra grace on top of the ack timeout for broadcasts with acks. Default 5 s
    /// (the Node adapter's `requestsTimeout`).
    pub request_timeout: Duration,
    /// Messages from Redis waiting to be handled, per namespace. When full, new messages are
    /// dropped and counted in `dropped`. Default 4096.
    pub inbound_queue: usize,
    /// Bytes of the messages from Redis waiting to be handled, all namespaces together; when a
    /// message would go over, it is dropped and counted in `dropped` (a message larger than
    /// this is taken only into an empty queue). Default 128 MiB.
    pub inbound_queue_bytes: usize,
    /// Messages waiting to be published. When full, broadcasts are dropped and counted in
    /// `dropped`; requests fail with [`crate::AdapterError::QueueFull`]. Default 4096.
    pub publish_queue: usize,
    /// Bytes of the messages waiting to be published. A message that would go over it is
    /// treated as when the queue is full: a broadcast or join waits for room (at most
    /// `request_timeout`, then it is dropped and counted in `dropped`), an answer to another
    /// node is dropped and counted, a request fails with [`crate::AdapterError::QueueFull`]. A
    /// message larger than this is taken only into an empty queue. Default 64 MiB.
    pub publish_queue_bytes: usize,
    /// Publishes in flight at once on the publishing connection (order is kept). Default 64.
    pub publish_concurrency: usize,
    /// Capacity of fred's pub/sub broadcast channel (fred's default is 32, which loses
    /// messages under load). Lagged messages are counted in `dropped`. Default 8192.
    pub fred_broadcast_capacity: usize,
    /// Requests of one namespace waiting for answers at once; more fail with
    /// [`crate::AdapterError::TooManyPendingRequests`]. Default 1024.
    pub max_pending_requests: usize,
    /// Answers buffered per waiting request; extra answers are dropped and counted. Default 4096.
    pub max_responses_per_request: usize,
    /// How often each namespace compares the rooms its sockets hold with its room-channel
    /// subscriptions: this unsubscribes rooms nobody holds any more and picks up joins that were
    /// not announced (`socket.join` is local and does not notify the adapter; announce it with
    /// [`crate::RedisAdapterCtr::sync_rooms_with`]). One comparison walks every room of every
    /// local socket. Default 1 s.
    pub room_sync_interval: Duration,
    /// Longest wait between reconnection attempts after Redis goes away. Default 500 ms.
    pub reconnect_max_delay: Duration,
    /// How often each connection PINGs Redis, so a silent network cut is noticed even on the
    /// otherwise idle subscriber connection. Default 1 s.
    pub heartbeat_interval: Duration,
    /// A command (or heartbeat) unanswered for this long marks the connection dead; fred then
    /// reconnects. Default 3 s.
    pub unresponsive_timeout: Duration,
    /// Ids of sockets held by other nodes that are remembered so `RemoteSocket` operations
    /// can target them (Node socket ids do not fit socketioxide's `Sid`). Oldest are
    /// forgotten first. Default 65536.
    pub foreign_id_capacity: usize,
    /// Server-side events waiting for the application, per namespace; when full, events are
    /// dropped and counted. Default 1024.
    pub server_side_event_queue: usize,
    /// Sharded pub/sub only: how often the subscriptions are checked against Redis (one
    /// `CLIENT INFO` per primary holding some), so that channels Redis dropped when their slot
    /// moved are subscribed again at the new owner. Bounds the window in which messages to a
    /// moved channel are missed. Default 200 ms.
    pub shard_check_interval: Duration,
    /// The wire: classic (default) or sharded.
    pub mode: AdapterMode,
    /// Classic mode only: per-room subscriptions (default) or one pattern.
    pub classic_subscriptions: ClassicSubscriptions,
    /// Sharded `dynamic` modes only: after this node publishes a `socketsJoin` for rooms R, its
    /// broadcasts to any room of R go on the main channel for this long, behind the join, so
    /// that every receiver applies the join first (`docs/sharded-adapter.md`, section 3).
    /// Zero turns the fence off. Default 5 s.
    pub join_fence: Duration,
}

impl Default for RedisAdapterConfig {
    fn default() -> Self {
        Self {
            key: "socket.io".to_owned(),
            request_timeout: Duration::from_secs(5),
            inbound_queue: 4096,
            inbound_queue_bytes: 128 << 20,
            publish_queue: 4096,
            publish_queue_bytes: 64 << 20,
            publish_concurrency: 64,
            fred_broadcast_capacity: 8192,
            max_pending_requests: 1024,
            max_responses_per_request: 4096,
            room_sync_interval: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(1),
            unresponsive_timeout: Duration::from_secs(3),
            foreign_id_capacity: 65536,
            server_side_event_queue: 1024,
            shard_check_interval: Duration::from_millis(200),
            mode: AdapterMode::Classic,
            classic_subscriptions: ClassicSubscriptions::PerRoom,
            join_fence: Duration::from_secs(5),
        }
    }
}
