//! The Redis backends sharing one connection, assembled.

use std::sync::Arc;
use std::time::Duration;

use super::conn::Conn;
use crate::bans::RedisBans;
use crate::failures::RedisFailures;
use crate::games::RedisGames;
use crate::history::RedisHistory;
use crate::nodes::RedisNodes;
use crate::presence::RedisPresence;
use crate::retention::Retention;
use crate::rooms::RedisRooms;
use crate::state::StateBackends;

/// The backends sharing one connection, as [`StateBackends`] and as their concrete types (the
/// monitor and resync need the latter).
#[derive(Clone, Debug)]
pub(crate) struct RedisBackends {
    pub(crate) rooms: Arc<RedisRooms>,
    pub(crate) presence: Arc<RedisPresence>,
    pub(crate) nodes: Arc<RedisNodes>,
    pub(crate) bans: Arc<RedisBans>,
    pub(crate) state: StateBackends,
}

impl RedisBackends {
    pub(crate) fn new(
        conn: Conn,
        history_capacity: usize,
        retention: Retention,
        stats_ttl: Duration,
    ) -> Self {
        let rooms = Arc::new(RedisRooms {
            conn: conn.clone(),
            retention,
        });
        let presence = Arc::new(RedisPresence { conn: conn.clone() });
        let nodes = Arc::new(RedisNodes::new(conn.clone(), stats_ttl));
        let bans = Arc::new(RedisBans::new(conn.clone()));
        let state = StateBackends {
            rooms: rooms.clone(),
            presence: presence.clone(),
            bans: bans.clone(),
            history: Arc::new(RedisHistory {
                conn: conn.clone(),
                capacity: history_capacity,
                ttl: retention.history,
            }),
            games: Arc::new(RedisGames {
                conn: conn.clone(),
                ttl: retention.game_sequence,
            }),
            failures: Arc::new(RedisFailures { conn }),
            nodes: nodes.clone(),
        };
        Self {
            rooms,
            presence,
            nodes,
            bans,
            state,
        }
    }
}
