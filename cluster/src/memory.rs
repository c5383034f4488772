//! In-memory backends for a single node.
//!
//! Each backend keeps its data behind one `std::sync::Mutex`; no lock is held across an `.await`
//! (the trait methods do their work synchronously inside the lock).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::time::Instant;

use crate::state::*;
use crate::stats::{NodeRegistry, NodeStats};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written in a way that matters
    // more than losing the whole node, so a poisoned lock is taken over rather than propagated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the full set of in-memory backends, with the default [`Retention`].
pub fn backends(history_capacity: usize) -> StateBackends {
    backends_with(history_capacity, Retention::default())
}

/// Builds the full set of in-memory backends. A room's history lives in the room's entry, so it
/// goes when the room goes.
pub fn backends_with(history_capacity: usize, retention: Retention) -> StateBackends {
    let rooms = Arc::new(MemoryRooms::new(retention));
    StateBackends {
        rooms: rooms.clone(),
        presence: Arc::new(MemoryPresence::default()),
        bans: Arc::new(MemoryBans::default()),
        history: Arc::new(MemoryHistory::with_rooms(
            history_capacity,
            retention.history,
            rooms,
        )),
        games: Arc::new(MemoryGames::new(retention.game_sequence)),
        nodes: Arc::new(MemoryNodes::default()),
    }
}

#[derive(Debug)]
struct RoomEntry {
    record: RoomRecord,
    members: Vec<Member>,
    /// When the room is deleted if nobody has joined it by then.
    unjoined_until: Option<Instant>,
    history: VecDeque<serde_json::Value>,
}

/// Room registry of a single node; each room carries its own history.
#[derive(Debug, Default)]
pub struct MemoryRooms {
    // Vec keeps creation order for `list`; room counts are small enough for linear lookups to be
    // cheaper than keeping a second index in step.
    rooms: Mutex<Vec<RoomEntry>>,
    retention: Retention,
}

impl MemoryRooms {
    /// A registry whose unjoined rooms live `retention.unjoined_room`.
    pub fn new(retention: Retention) -> Self {
        Self {
            rooms: Mutex::default(),
            retention,
        }
    }

    /// The room list with rooms nobody joined in time removed.
    fn swept(&self) -> MutexGuard<'_, Vec<RoomEntry>> {
        let mut rooms = lock(&self.rooms);
        let now = Instant::now();
        rooms.retain(|r| r.unjoined_until.is_none_or(|t| t > now) || !r.members.is_empty());
        rooms
    }

    fn append_history(&self, room_id: &str, message: serde_json::Value, capacity: usize) {
        let mut rooms = lock(&self.rooms);
        // A message for a room that is gone starts no history: a later room of that id starts
        // empty.
        if let Some(room) = rooms.iter_mut().find(|r| r.record.id == room_id) {
            if room.history.len() >= capacity {
                room.history.pop_front();
            }
            room.history.push_back(message);
        }
    }

    fn recent_history(&self, room_id: &str, limit: usize) -> Vec<serde_json::Value> {
        lock(&self.rooms)
            .iter()
            .find(|r| r.record.id == room_id)
            .map(|r| {
                let skip = r.history.len().saturating_sub(limit);
                r.history.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl RoomRegistry for MemoryRooms {
    async fn create_bounded(
        &self,
        room: RoomRecord,
        max_unjoined: usize,
    ) -> StateResult<CreateOutcome> {
        let mut rooms = self.swept();
        if rooms.iter().any(|r| r.record.id == room.id) {
            return Ok(CreateOutcome::Exists);
        }
        let unjoined = rooms
            .iter()
            .filter(|r| r.unjoined_until.is_some() && r.record.created_by == room.created_by)
            .count();
        if unjoined >= max_unjoined {
            return Ok(CreateOutcome::CreatorAtLimit);
        }
        rooms.push(RoomEntry {
            record: room,
            members: Vec::new(),
            unjoined_until: Some(Instant::now() + self.retention.unjoined_room),
            history: VecDeque::new(),
        });
        Ok(CreateOutcome::Created)
    }

    async fn get(&self, room_id: &str) -> StateResult<Option<RoomRecord>> {
        Ok(self
            .swept()
            .iter()
            .find(|r| r.record.id == room_id)
            .map(|r| r.record.clone()))
    }

    async fn list(&self) -> StateResult<Vec<RoomRecord>> {
        Ok(self.swept().iter().map(|r| r.record.clone()).collect())
    }

    async fn count(&self) -> StateResult<usize> {
        Ok(self.swept().len())
    }

    async fn join(&self, room_id: &str, member: Member) -> StateResult<JoinOutcome> {
        let mut rooms = self.swept();
        let Some(room) = rooms.iter_mut().find(|r| r.record.id == room_id) else {
            return Ok(JoinOutcome::NoSuchRoom);
        };
        if room.members.iter().any(|m| m.socket_id == member.socket_id) {
            return Ok(JoinOutcome::AlreadyMember {
                user_count: room.members.len(),
            });
        }
        if room.members.len() >= room.record.max_users as usize {
            return Ok(JoinOutcome::Full);
        }
        room.members.push(member);
        room.unjoined_until = None;
        Ok(JoinOutcome::Joined {
            user_count: room.members.len(),
        })
    }
    async fn leave(&self, room_id: &str, socket_id: &str) -> StateResult<LeaveOutcome> {
        let mut rooms = lock(&self.rooms);
        let Some(idx) = rooms.iter().position(|r| r.record.id == room_id) else {
            return Ok(LeaveOutcome::NotMember);
        };
        let room = &mut rooms[idx];
        let before = room.members.len();
        room.members.retain(|m| m.socket_id != socket_id);
        if room.members.len() == before {
            return Ok(LeaveOutcome::NotMember);
        }
        let user_count = room.members.len();
        let room_deleted = user_count == 0;
        if room_deleted {
            rooms.remove(idx);
        }
        Ok(LeaveOutcome::Left {
            user_count,
            room_deleted,
        })
    }

    async fn members(&self, room_id: &str) -> StateResult<Vec<Member>> {
        Ok(lock(&self.rooms)
            .iter()
            .find(|r| r.record.id == room_id)
            .map(|r| r.members.clone())
            .unwrap_or_default())
    }

    async fn member_count(&self, room_id: &str) -> StateResult<usize> {
        Ok(lock(&self.rooms)
            .iter()
            .find(|r| r.record.id == room_id)
            .map_or(0, |r| r.members.len()))
    }

    async fn purge_node(&self, node_id: &str) -> StateResult<Vec<PurgedMembership>> {
        let mut rooms = lock(&self.rooms);
        let mut purged = Vec::new();
        for room in rooms.iter_mut() {
            let (gone, kept): (Vec<_>, Vec<_>) =
                room.members.drain(..).partition(|m| m.node_id == node_id);
            room.members = kept;
            let user_count = room.members.len();
            for member in gone {
                purged.push(PurgedMembership {
                    room_id: room.record.id.clone(),
                    member,
                    user_count,
                    room_deleted: user_count == 0,
                });
            }
        }
        rooms
            .retain(|r| !(r.members.is_empty() && purged.iter().any(|p| p.room_id == r.record.id)));
        Ok(purged)
    }
}

/// Presence of a single node: indexed by socket and by user, so a connect or disconnect costs
/// the same with 10 or 100,000 sockets online.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    table: Mutex<PresenceTable>,
}

#[derive(Debug, Default)]
struct PresenceTable {
    /// Connection order, so listings come out oldest first.
    next_seq: u64,
    by_socket: HashMap<String, (u64, OnlineSocket)>,
    /// user id -> (connection order -> socket id)
    by_user: HashMap<String, BTreeMap<u64, String>>,
}

impl PresenceTable {
    fn remove(&mut self, socket_id: &str) -> Option<OnlineSocket> {
        let (seq, socket) = self.by_socket.remove(socket_id)?;
        if let Some(of_user) = self.by_user.get_mut(&socket.user_id) {
            of_user.remove(&seq);
            if of_user.is_empty() {
                self.by_user.remove(&socket.user_id);
            }
        }
        Some(socket)
    }

    fn is_online(&self, user_id: &str) -> bool {
        self.by_user.contains_key(user_id)
    }

    fn ordered(&self, mut sockets: Vec<&(u64, OnlineSocket)>) -> Vec<OnlineSocket> {
        sockets.sort_unstable_by_key(|(seq, _)| *seq);
        sockets.into_iter().map(|(_, s)| s.clone()).collect()
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn socket_connected(&self, socket: OnlineSocket) -> StateResult<bool> {
        let mut table = lock(&self.table);
        table.remove(&socket.socket_id);
        let first = !table.is_online(&socket.user_id);
        let seq = table.next_seq;
        table.next_seq += 1;
        table
            .by_user
            .entry(socket.user_id.clone())
            .or_default()
            .insert(seq, socket.socket_id.clone());
        table
            .by_socket
            .insert(socket.socket_id.clone(), (seq, socket));
        Ok(first)
    }

    async fn socket_disconnected(&self, user_id: &str, socket_id: &str) -> StateResult<bool> {
        let mut table = lock(&self.table);
        let removed = table.remove(socket_id).is_some();
        Ok(removed && !table.is_online(user_id))
    }

    async fn set_username(
        &self,
        user_id: &str,
        socket_id: &str,
        username: &str,
    ) -> StateResult<()> {
        let mut table = lock(&self.table);
        if let Some((_, s)) = table.by_socket.get_mut(socket_id)
            && s.user_id == user_id
        {
            username.clone_into(&mut s.username);
        }
        Ok(())
    }

    async fn online(&self) -> StateResult<Vec<OnlineSocket>> {
        let table = lock(&self.table);
        Ok(table.ordered(table.by_socket.values().collect()))
    }

    async fn sockets_of(&self, user_id: &str) -> StateResult<Vec<OnlineSocket>> {
        let table = lock(&self.table);
        let Some(of_user) = table.by_user.get(user_id) else {
            return Ok(Vec::new());
        };
        Ok(of_user
            .values()
            .filter_map(|sid| table.by_socket.get(sid))
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn find_socket(&self, socket_id: &str) -> StateResult<Option<OnlineSocket>> {
        Ok(lock(&self.table)
            .by_socket
            .get(socket_id)
            .map(|(_, s)| s.clone()))
    }

    async fn purge_node(&self, node_id: &str) -> StateResult<Vec<OnlineSocket>> {
        let mut table = lock(&self.table);
        let gone_ids: Vec<&(u64, OnlineSocket)> = table
            .by_socket
            .values()
            .filter(|(_, s)| s.node_id == node_id)
            .collect();
        let gone = table.ordered(gone_ids);
        for s in &gone {
            table.remove(&s.socket_id);
        }
        let mut reported = HashSet::new();
        Ok(gone
            .into_iter()
            .filter(|s| !table.is_online(&s.user_id) && reported.insert(s.user_id.clone()))
            .collect())
    }
}

/// Bans of a single node.
#[derive(Debug, Default)]
pub struct MemoryBans {
    bans: Mutex<HashMap<String, Ban>>,
}

#[async_trait]
impl BanList for MemoryBans {
    async fn ban(&self, ban: Ban) -> StateResult<()> {
        lock(&self.bans).insert(ban.user_id.clone(), ban);
        Ok(())
    }

    async fn unban(&self, user_id: &str) -> StateResult<bool> {
        let removed = lock(&self.bans).remove(user_id);
        Ok(removed.is_some_and(|b| b.is_active_at(Utc::now())))
    }

    async fn active(&self, user_id: &str) -> StateResult<Option<Ban>> {
        let mut bans = lock(&self.bans);
        let now = Utc::now();
        match bans.get(user_id) {
            Some(b) if b.is_active_at(now) => Ok(Some(b.clone())),
            Some(_) => {
                bans.remove(user_id);
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

/// Bounded history of a single node: a ring of `capacity` messages per scope. Rooms' rings live
/// in their [`MemoryRooms`] entry when the history is built [`MemoryHistory::with_rooms`]; every
/// other scope is forgotten once it has had no message for the TTL.
#[derive(Debug)]
pub struct MemoryHistory {
    capacity: usize,
    ttl: Duration,
    rooms: Option<Arc<MemoryRooms>>,
    scopes: Mutex<Expiring<HistoryScope, VecDeque<serde_json::Value>>>,
}

impl MemoryHistory {
    /// A history keeping at most `capacity` messages per scope (at least one), rooms included.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl: Retention::default().history,
            rooms: None,
            scopes: Mutex::default(),
        }
    }

    /// A history whose room scopes are kept by `rooms` (deleted with their room), the other
    /// scopes forgotten after `ttl` without a message.
    pub fn with_rooms(capacity: usize, ttl: Duration, rooms: Arc<MemoryRooms>) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            rooms: Some(rooms),
            scopes: Mutex::default(),
        }
    }

    /// How many scopes outside rooms hold messages (for the tests of shrinking).
    pub fn scope_count(&self) -> usize {
        let mut scopes = lock(&self.scopes);
        scopes.sweep(self.ttl);
        scopes.len()
    }
}

/// A map whose entries are dropped once not touched for a TTL: each write stamps its entry, and
/// a sweep (at most once per TTL/4, on a write) drops what is older. Its size is bounded by what
/// was written within about one TTL.
#[derive(Debug)]
struct Expiring<K, V> {
    entries: HashMap<K, (Instant, V)>,
    last_sweep: Instant,
}

impl<K, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Default> Expiring<K, V> {
    fn sweep(&mut self, ttl: Duration) {
        let now = Instant::now();
        self.entries
            .retain(|_, (at, _)| now.duration_since(*at) < ttl);
        self.last_sweep = now;
    }

    /// The live entry of `key` (a fresh default when absent or expired), stamped now.
    fn touch(&mut self, key: K, ttl: Duration) -> &mut V {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) >= ttl / 4 {
            self.sweep(ttl);
        }
        let entry = self
            .entries
            .entry(key)
            .or_insert_with(|| (now, V::default()));
        if now.duration_since(entry.0) >= ttl {
            entry.1 = V::default();
        }
        entry.0 = now;
        &mut entry.1
    }

    fn get(&self, key: &K, ttl: Duration) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, v)| v)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[async_trait]
impl History for MemoryHistory {
    async fn append(&self, scope: &HistoryScope, message: serde_json::Value) -> StateResult<()> {
        if let (Some(rooms), HistoryScope::Room(room_id)) = (&self.rooms, scope) {
            rooms.append_history(room_id, message, self.capacity);
            return Ok(());
        }
        let mut scopes = lock(&self.scopes);
        let ring = scopes.touch(scope.clone(), self.ttl);
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(message);
        Ok(())
    }

    async fn recent(
        &self,
        scope: &HistoryScope,
        limit: usize,
    ) -> StateResult<Vec<serde_json::Value>> {
        if let (Some(rooms), HistoryScope::Room(room_id)) = (&self.rooms, scope) {
            return Ok(rooms.recent_history(room_id, limit));
        }
        let scopes = lock(&self.scopes);
        Ok(scopes
            .get(scope, self.ttl)
            .map(|ring| {
                let skip = ring.len().saturating_sub(limit);
                ring.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default())
    }
}

/// Game sequence numbers of a single node; a game idle for the TTL is forgotten.
#[derive(Debug)]
pub struct MemoryGames {
    ttl: Duration,
    seqs: Mutex<Expiring<String, u64>>,
}

impl Default for MemoryGames {
    fn default() -> Self {
        Self::new(Retention::default().game_sequence)
    }
}

impl MemoryGames {
    /// Counters forgotten after `ttl` without an action.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seqs: Mutex::default(),
        }
    }

    /// How many games have a live counter (for the tests of shrinking).
    pub fn game_count(&self) -> usize {
        let mut seqs = lock(&self.seqs);
        seqs.sweep(self.ttl);
        seqs.len()
    }
}

#[async_trait]
impl GameSequence for MemoryGames {
    async fn next(&self, game_id: &str) -> StateResult<u64> {
        let mut seqs = lock(&self.seqs);
        let seq = seqs.touch(game_id.to_owned(), self.ttl);
        *seq += 1;
        Ok(*seq)
    }
}

/// Node registry of a single node: it only ever knows itself.
#[derive(Debug, Default)]
pub struct MemoryNodes {
    nodes: Mutex<HashMap<String, NodeStats>>,
}

#[async_trait]
impl NodeRegistry for MemoryNodes {
    async fn publish(&self, stats: &NodeStats) -> StateResult<()> {
        lock(&self.nodes).insert(stats.server_id.clone(), stats.clone());
        Ok(())
    }

    async fn withdraw(&self, server_id: &str) -> StateResult<()> {
        lock(&self.nodes).remove(server_id);
        Ok(())
    }

    async fn live_nodes(&self) -> StateResult<Vec<NodeStats>> {
        let mut nodes: Vec<_> = lock(&self.nodes).values().cloned().collect();
        nodes.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::*;
    use chrono::Duration;

    #[tokio::test]
    async fn rooms_refuse_duplicates_and_keep_order() {
        let rooms = MemoryRooms::default();
        assert!(rooms.create(room("a", 10)).await.unwrap());
        assert!(rooms.create(room("b", 10)).await.unwrap());
        assert!(!rooms.create(room("a", 5)).await.unwrap());
        assert_eq!(room_ids(&rooms).await, ["a", "b"]);
        assert_eq!(rooms.get("a").await.unwrap().unwrap().max_users, 10);
        rooms.join("b", member("s1", "n")).await.unwrap();
        assert_eq!(
            room_counts(&rooms).await,
            [("a".to_owned(), 0), ("b".to_owned(), 1)]
        );
    }

    #[tokio::test]
    async fn join_enforces_capacity_and_existence() {
        let rooms = MemoryRooms::default();
        rooms.create(room("r", 2)).await.unwrap();
        assert_joins_until_full(&rooms, "r").await;
    }

    #[tokio::test]
    async fn last_leave_deletes_the_room() {
        let rooms = MemoryRooms::default();
        rooms.create(room("r", 5)).await.unwrap();
        rooms.join("r", member("s1", "n")).await.unwrap();
        rooms.join("r", member("s2", "n")).await.unwrap();
        assert_eq!(rooms.count().await.unwrap(), 1);
        assert_leaves_until_deleted(&rooms, "r").await;
        assert_eq!(rooms.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn purge_node_removes_only_that_nodes_members() {
        let rooms = MemoryRooms::default();
        rooms.create(room("r", 5)).await.unwrap();
        rooms.create(room("q", 5)).await.unwrap();
        rooms.join("r", member("s1", "dead")).await.unwrap();
        rooms.join("r", member("s2", "alive")).await.unwrap();
        rooms.join("q", member("s3", "dead")).await.unwrap();
        let purged = rooms.purge_node("dead").await.unwrap();
        assert_eq!(purged.len(), 2);
        assert_eq!(rooms.member_count("r").await.unwrap(), 1);
        assert!(
            rooms.get("q").await.unwrap().is_none(),
            "emptied room is deleted"
        );
        assert!(purged.iter().any(|p| p.room_id == "q" && p.room_deleted));
    }

    #[tokio::test]
    async fn presence_reports_first_and_last_socket() {
        let p = MemoryPresence::default();
        assert!(p.socket_connected(online("u", "s1", "n")).await.unwrap());
        assert!(!p.socket_connected(online("u", "s2", "n")).await.unwrap());
        assert!(!p.socket_disconnected("u", "s1").await.unwrap());
        assert!(p.socket_disconnected("u", "s2").await.unwrap());
        assert!(
            !p.socket_disconnected("u", "s2").await.unwrap(),
            "a second disconnect of the same socket is not a second offline"
        );
    }

    #[tokio::test]
    async fn presence_lists_in_connection_order_and_finds_by_socket_and_user() {
        let p = MemoryPresence::default();
        for (user, sid) in [("a", "s1"), ("b", "s2"), ("a", "s3"), ("c", "s4")] {
            p.socket_connected(online(user, sid, "n")).await.unwrap();
        }
        // The same socket id again (a reconnect) moves it to the end, listed once.
        p.socket_connected(online("b", "s2", "n")).await.unwrap();
        p.set_username("a", "s3", "renamed").await.unwrap();
        p.set_username("b", "s1", "not b's socket").await.unwrap();
        let ids = |v: Vec<OnlineSocket>| v.into_iter().map(|s| s.socket_id).collect::<Vec<_>>();
        assert_eq!(ids(p.online().await.unwrap()), ["s1", "s3", "s4", "s2"]);
        assert_eq!(ids(p.sockets_of("a").await.unwrap()), ["s1", "s3"]);
        assert!(p.sockets_of("nobody").await.unwrap().is_empty());
        let s3 = p.find_socket("s3").await.unwrap().unwrap();
        assert_eq!(
            (s3.user_id.as_str(), s3.username.as_str()),
            ("a", "renamed")
        );
        assert_eq!(
            p.find_socket("s1").await.unwrap().unwrap().username,
            "name-a"
        );
        assert!(p.find_socket("s9").await.unwrap().is_none());
        assert!(!p.socket_disconnected("a", "s1").await.unwrap());
        assert!(
            p.socket_disconnected("a", "s3").await.unwrap(),
            "a's last socket"
        );
        assert_eq!(ids(p.online().await.unwrap()), ["s4", "s2"]);
    }

    #[tokio::test]
    async fn presence_purge_reports_users_who_went_offline() {
        let p = MemoryPresence::default();
        p.socket_connected(online("a", "s1", "dead")).await.unwrap();
        p.socket_connected(online("a", "s2", "dead")).await.unwrap();
        p.socket_connected(online("b", "s3", "dead")).await.unwrap();
        p.socket_connected(online("b", "s4", "alive"))
            .await
            .unwrap();
        let offline = p.purge_node("dead").await.unwrap();
        assert_eq!(offline.len(), 1);
        assert_eq!(offline[0].user_id, "a");
        assert_eq!(p.online().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bans_expire() {
        let bans = MemoryBans::default();
        let now = Utc::now();
        bans.ban(ban("u", "r", now, Some(now - Duration::seconds(1))))
            .await
            .unwrap();
        assert!(bans.active("u").await.unwrap().is_none());
        bans.ban(ban("u", "r", now, None)).await.unwrap();
        assert!(bans.active("u").await.unwrap().is_some());
        assert!(bans.unban("u").await.unwrap());
        assert!(bans.active("u").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn history_is_bounded_and_oldest_first() {
        let h = MemoryHistory::new(3);
        let scope = HistoryScope::Room("r".into());
        for i in 0..5 {
            h.append(&scope, serde_json::json!({ "i": i }))
                .await
                .unwrap();
        }
        let got = h.recent(&scope, 10).await.unwrap();
        assert_eq!(
            got,
            vec![
                serde_json::json!({"i":2}),
                serde_json::json!({"i":3}),
                serde_json::json!({"i":4})
            ]
        );
        let got = h.recent(&scope, 2).await.unwrap();
        assert_eq!(
            got,
            vec![serde_json::json!({"i":3}), serde_json::json!({"i":4})]
        );
        assert_eq!(
            HistoryScope::private("b", "a"),
            HistoryScope::private("a", "b")
        );
    }

    fn short_retention() -> Retention {
        Retention {
            unjoined_room: std::time::Duration::from_secs(60),
            history: std::time::Duration::from_secs(3600),
            game_sequence: std::time::Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn a_rooms_history_goes_with_the_room() {
        let state = backends_with(10, short_retention());
        let scope = HistoryScope::Room("hr".into());
        state.rooms.create(room("hr", 5)).await.unwrap();
        state.rooms.join("hr", member("s1", "n")).await.unwrap();
        state
            .history
            .append(&scope, serde_json::json!({"secret": 1}))
            .await
            .unwrap();
        assert_eq!(state.history.recent(&scope, 10).await.unwrap().len(), 1);
        state.rooms.leave("hr", "s1").await.unwrap();
        // A late message for the deleted room starts no history.
        state
            .history
            .append(&scope, serde_json::json!({"late": 1}))
            .await
            .unwrap();
        state.rooms.create(room("hr", 5)).await.unwrap();
        assert!(
            state.history.recent(&scope, 10).await.unwrap().is_empty(),
            "a room re-created under the same id starts empty"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rooms_nobody_joins_expire_and_joined_ones_stay() {
        let rooms = MemoryRooms::new(short_retention());
        rooms.create(room("never", 5)).await.unwrap();
        rooms.create(room("joined", 5)).await.unwrap();
        rooms.join("joined", member("s1", "n")).await.unwrap();
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        assert_eq!(rooms.count().await.unwrap(), 2);
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert_eq!(room_ids(&rooms).await, ["joined"]);
        assert_eq!(
            rooms.join("never", member("s2", "n")).await.unwrap(),
            JoinOutcome::NoSuchRoom
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_creator_has_a_bounded_number_of_unjoined_rooms() {
        let rooms = MemoryRooms::new(short_retention());
        let by = |id: &str, user: &str| {
            let mut r = room(id, 5);
            r.created_by = user.to_owned();
            r
        };
        for id in ["m1", "m2"] {
            assert_eq!(
                rooms.create_bounded(by(id, "mallory"), 2).await.unwrap(),
                CreateOutcome::Created
            );
        }
        assert_eq!(
            rooms.create_bounded(by("m3", "mallory"), 2).await.unwrap(),
            CreateOutcome::CreatorAtLimit
        );
        assert_eq!(
            rooms.create_bounded(by("o1", "other"), 2).await.unwrap(),
            CreateOutcome::Created
        );
        rooms.join("m1", member("s1", "n")).await.unwrap();
        assert_eq!(
            rooms.create_bounded(by("m3", "mallory"), 2).await.unwrap(),
            CreateOutcome::Created
        );
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert_eq!(
            rooms.create_bounded(by("m4", "mallory"), 2).await.unwrap(),
            CreateOutcome::Created
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_histories_and_game_counters_are_forgotten() {
        let h = MemoryHistory::with_rooms(
            5,
            std::time::Duration::from_secs(100),
            Arc::new(MemoryRooms::default()),
        );
        let games = MemoryGames::new(std::time::Duration::from_secs(100));
        for i in 0..50 {
            h.append(
                &HistoryScope::private("a", &format!("made-up-{i}")),
                serde_json::json!(i),
            )
            .await
            .unwrap();
            games.next(&format!("g{i}")).await.unwrap();
        }
        assert_eq!((h.scope_count(), games.game_count()), (50, 50));
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        h.append(&HistoryScope::private("a", "b"), serde_json::json!(1))
            .await
            .unwrap();
        assert_eq!(
            games.next("g0").await.unwrap(),
            2,
            "a live game keeps counting"
        );
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert_eq!((h.scope_count(), games.game_count()), (1, 1));
        assert!(
            h.recent(&HistoryScope::private("a", "made-up-1"), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn game_sequence_has_no_gaps() {
        let g = Arc::new(MemoryGames::default());
        let mut handles = Vec::new();
        for _ in 0..8 {
            let g = g.clone();
            handles.push(tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..100 {
                    v.push(g.next("g").await.unwrap());
                }
                v
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=800).collect::<Vec<u64>>());
        assert_eq!(g.next("other").await.unwrap(), 1);
    }
}
