//! Redis implementations of the state traits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use fred::prelude::*;
use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;

use super::scripts::{self, membership_token};
use crate::keys::{self, Keys};
use crate::state::*;
use crate::stats::{NodeRegistry, NodeStats};

/// The shared command connection and key names every backend uses.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    /// False from the moment fred reports the connection lost until it is back (fred's own state
    /// still says "connected" while it waits before the first reconnection attempt).
    pub(crate) link_up: Arc<AtomicBool>,
}

/// Maps a fred error: anything that means "Redis did not answer" is `Unavailable`.
pub(crate) fn state_error(e: &Error) -> StateError {
    match e.kind() {
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Routing => {
            StateError::Unavailable(e.to_string())
        }
        _ => StateError::Backend(e.to_string()),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(json: &str) -> StateResult<T> {
    serde_json::from_str(json).map_err(|e| StateError::Corrupt(format!("{e}: {json}")))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> StateResult<String> {
    serde_json::to_string(value).map_err(|e| StateError::Corrupt(e.to_string()))
}

impl Conn {
    /// Fails at once while the client is reconnecting, rather than queueing a command behind an
    /// outage; the command timeout covers a connection that looks up but does not answer.
    pub(crate) fn ensure_connected(&self) -> StateResult<()> {
        if self.client.is_connected() && self.link_up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StateError::Unavailable(format!(
                "not connected to Redis (state: {:?})",
                self.client.state()
            )))
        }
    }

    pub(crate) async fn eval<R: FromValue>(
        &self,
        script: &'static scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> StateResult<R> {
        self.ensure_connected()?;
        let keys: Vec<Key> = keys.into_iter().map(Key::from).collect();
        let args: Vec<Value> = args.into_iter().map(Value::from).collect();
        if self.client.is_clustered() {
            // SCRIPT LOAD would have to reach every primary; EVAL needs no cache.
            return self
                .client
                .eval(script.source, keys, args)
                .await
                .map_err(|e| state_error(&e));
        }
        let sha = match script.sha.get() {
            Some(sha) => sha.clone(),
            None => self.load_script(script).await?,
        };
        match self.client.evalsha(sha, keys.clone(), args.clone()).await {
            // Redis restarted (or ran SCRIPT FLUSH) and forgot the script.
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let sha = self.load_script(script).await?;
                self.client
                    .evalsha(sha, keys, args)
                    .await
                    .map_err(|e| state_error(&e))
            }
            result => result.map_err(|e| state_error(&e)),
        }
    }

    async fn load_script(&self, script: &'static scripts::Script) -> StateResult<String> {
        let sha: String = self
            .client
            .script_load(script.source)
            .await
            .map_err(|e| state_error(&e))?;
        let _ = script.sha.set(sha.clone());
        Ok(sha)
    }

    /// Every key matching `pattern`, found with `SCAN` (on each primary of a Redis Cluster),
    /// [`SCAN_PAGE`] keys examined per call.
    pub(crate) async fn scan_keys(&self, pattern: &str) -> StateResult<Vec<String>> {
        self.ensure_connected()?;
        let keys: Vec<Key> = if self.client.is_clustered() {
            self.client
                .scan_cluster_buffered(pattern.to_owned(), Some(SCAN_PAGE), None)
                .try_collect()
                .await
        } else {
            self.client
                .scan_buffered(pattern.to_owned(), Some(SCAN_PAGE), None)
                .try_collect()
                .await
        }
        .map_err(|e| state_error(&e))?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.into_string())
            .collect::<Vec<_>>())
    }
}

/// Keys `SCAN` examines per call: the keyspace holds a key or more per user, and every node
/// lists the live nodes every few seconds, so small pages meant hundreds of round trips (and
/// replies to every node) per listing.
const SCAN_PAGE: u32 = 1000;

/// Room registry on Redis.
#[derive(Debug)]
pub struct RedisRooms {
    pub(crate) conn: Conn,
    pub(crate) retention: Retention,
}

/// Now, in Unix milliseconds (the clock of the unjoined-room deadlines).
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn pair(v: &[i64], i: usize) -> i64 {
    v.get(i).copied().unwrap_or_default()
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or_default()
}

#[async_trait]
impl RoomRegistry for RedisRooms {
    async fn create_bounded(
        &self,
        room: RoomRecord,
        max_unjoined: usize,
    ) -> StateResult<CreateOutcome> {
        let k = &self.conn.keys;
        let created: i64 = self
            .conn
            .eval(
                &scripts::CREATE_ROOM,
                vec![
                    k.room(&room.id),
                    k.rooms_index(),
                    k.order_counter(),
                    k.history(&HistoryScope::Room(room.id.clone())),
                    k.unjoined_rooms(),
                    k.unjoined_rooms_of(&room.created_by),
                ],
                vec![
                    encode(&room)?,
                    room.max_users.to_string(),
                    room.id.clone(),
                    k.prefix().to_owned(),
                    now_ms().to_string(),
                    now_ms()
                        .saturating_add(millis(self.retention.unjoined_room))
                        .to_string(),
                    // Lua numbers are doubles: anything past 2^53 means "no bound" all the same.
                    max_unjoined.min(1 << 53).to_string(),
                ],
            )
            .await?;
        Ok(match created {
            1 => CreateOutcome::Created,
            -1 => CreateOutcome::CreatorAtLimit,
            _ => CreateOutcome::Exists,
        })
    }

    async fn get(&self, room_id: &str) -> StateResult<Option<RoomRecord>> {
        self.conn.ensure_connected()?;
        let json: Option<String> = self
            .conn
            .client
            .hget(self.conn.keys.room(room_id), "record")
            .await
            .map_err(|e| state_error(&e))?;
        json.as_deref().map(decode).transpose()
    }

    async fn list(&self) -> StateResult<Vec<RoomRecord>> {
        let k = &self.conn.keys;
        let jsons: Vec<String> = self
            .conn
            .eval(
                &scripts::LIST_ROOMS,
                vec![k.rooms_index()],
                vec![k.prefix().to_owned(), now_ms().to_string()],
            )
            .await?;
        jsons.iter().map(|j| decode(j)).collect()
    }

    async fn join(&self, room_id: &str, member: Member) -> StateResult<JoinOutcome> {
        let k = &self.conn.keys;
        let r: Vec<i64> = self
            .conn
            .eval(
                &scripts::JOIN_ROOM,
                vec![
                    k.room(room_id),
                    k.room_members(room_id),
                    k.room_member_records(room_id),
                    k.order_counter(),
                    k.node_memberships(&member.node_id),
                    k.rooms_index(),
                ],
                vec![
                    member.socket_id.clone(),
                    encode(&member)?,
                    membership_token(room_id, &member.socket_id),
                    k.prefix().to_owned(),
                    room_id.to_owned(),
                    now_ms().to_string(),
                ],
            )
            .await?;
        let user_count = count(pair(&r, 1));
        Ok(match pair(&r, 0) {
            1 => JoinOutcome::Joined { user_count },
            2 => JoinOutcome::AlreadyMember { user_count },
            -2 => JoinOutcome::Full,
            _ => JoinOutcome::NoSuchRoom,
        })
    }

    async fn leave(&self, room_id: &str, socket_id: &str) -> StateResult<LeaveOutcome> {
        let k = &self.conn.keys;
        let r: Vec<i64> = self
            .conn
            .eval(
                &scripts::LEAVE_ROOM,
                vec![
                    k.room(room_id),
                    k.room_members(room_id),
                    k.room_member_records(room_id),
                    k.rooms_index(),
                    k.history(&HistoryScope::Room(room_id.to_owned())),
                ],
                vec![
                    socket_id.to_owned(),
                    room_id.to_owned(),
                    k.prefix().to_owned(),
                ],
            )
            .await?;
        Ok(if pair(&r, 0) == 1 {
            LeaveOutcome::Left {
                user_count: count(pair(&r, 1)),
                room_deleted: pair(&r, 2) == 1,
            }
        } else {
            LeaveOutcome::NotMember
        })
    }

    async fn members(&self, room_id: &str) -> StateResult<Vec<Member>> {
        let k = &self.conn.keys;
        let jsons: Vec<String> = self
            .conn
            .eval(
                &scripts::ROOM_MEMBERS,
                vec![k.room_members(room_id), k.room_member_records(room_id)],
                vec![],
            )
            .await?;
        jsons.iter().map(|j| decode(j)).collect()
    }

    async fn count(&self) -> StateResult<usize> {
        let k = &self.conn.keys;
        let n: i64 = self
            .conn
            .eval(
                &scripts::COUNT_ROOMS,
                vec![k.rooms_index()],
                vec![k.prefix().to_owned(), now_ms().to_string()],
            )
            .await?;
        Ok(count(n))
    }

    async fn member_count(&self, room_id: &str) -> StateResult<usize> {
        self.conn.ensure_connected()?;
        let n: i64 = self
            .conn
            .client
            .zcard(self.conn.keys.room_members(room_id))
            .await
            .map_err(|e| state_error(&e))?;
        Ok(count(n))
    }

    async fn list_with_counts(&self) -> StateResult<Vec<(RoomRecord, usize)>> {
        let k = &self.conn.keys;
        let flat: Vec<Value> = self
            .conn
            .eval(
                &scripts::LIST_ROOMS_WITH_COUNTS,
                vec![k.rooms_index()],
                vec![k.prefix().to_owned(), now_ms().to_string()],
            )
            .await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let json = pair[0].as_string().unwrap_or_default();
            out.push((decode(&json)?, count(pair[1].as_i64().unwrap_or_default())));
        }
        Ok(out)
    }

    async fn purge_node(&self, node_id: &str) -> StateResult<Vec<PurgedMembership>> {
        let k = &self.conn.keys;
        let flat: Vec<Value> = self
            .conn
            .eval(
                &scripts::PURGE_NODE_ROOMS,
                vec![k.node_memberships(node_id), k.rooms_index()],
                vec![k.prefix().to_owned()],
            )
            .await?;
        let mut purged = Vec::with_capacity(flat.len() / 4);
        for chunk in flat.chunks_exact(4) {
            let room_id = chunk[0].as_string().unwrap_or_default();
            let member_json = chunk[1].as_string().unwrap_or_default();
            purged.push(PurgedMembership {
                room_id,
                member: decode(&member_json)?,
                user_count: count(chunk[2].as_i64().unwrap_or_default()),
                room_deleted: chunk[3].as_i64() == Some(1),
            });
        }
        Ok(purged)
    }
}

/// Presence on Redis.
#[derive(Debug)]
pub struct RedisPresence {
    pub(crate) conn: Conn,
}

#[async_trait]
impl Presence for RedisPresence {
    async fn socket_connected(&self, socket: OnlineSocket) -> StateResult<bool> {
        let k = &self.conn.keys;
        let first: i64 = self
            .conn
            .eval(
                &scripts::SOCKET_CONNECTED,
                vec![
                    k.presence_sockets(),
                    k.presence_user(&socket.user_id),
                    k.node_sockets(&socket.node_id),
                ],
                vec![
                    socket.socket_id.clone(),
                    encode(&socket)?,
                    k.prefix().to_owned(),
                ],
            )
            .await?;
        Ok(first == 1)
    }

    async fn socket_disconnected(&self, user_id: &str, socket_id: &str) -> StateResult<bool> {
        let k = &self.conn.keys;
        let last: i64 = self
            .conn
            .eval(
                &scripts::SOCKET_DISCONNECTED,
                vec![k.presence_sockets(), k.presence_user(user_id)],
                vec![socket_id.to_owned(), k.prefix().to_owned()],
            )
            .await?;
        Ok(last == 1)
    }

    async fn set_username(
        &self,
        user_id: &str,
        socket_id: &str,
        username: &str,
    ) -> StateResult<()> {
        let _: i64 = self
            .conn
            .eval(
                &scripts::SET_USERNAME,
                vec![self.conn.keys.presence_sockets()],
                vec![
                    socket_id.to_owned(),
                    user_id.to_owned(),
                    username.to_owned(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn online(&self) -> StateResult<Vec<OnlineSocket>> {
        self.conn.ensure_connected()?;
        let jsons: Vec<String> = self
            .conn
            .client
            .hvals(self.conn.keys.presence_sockets())
            .await
            .map_err(|e| state_error(&e))?;
        jsons.iter().map(|j| decode(j)).collect()
    }

    async fn sockets_of(&self, user_id: &str) -> StateResult<Vec<OnlineSocket>> {
        let k = &self.conn.keys;
        let jsons: Vec<String> = self
            .conn
            .eval(
                &scripts::SOCKETS_OF,
                vec![k.presence_sockets(), k.presence_user(user_id)],
                vec![],
            )
            .await?;
        jsons.iter().map(|j| decode(j)).collect()
    }

    async fn find_socket(&self, socket_id: &str) -> StateResult<Option<OnlineSocket>> {
        self.conn.ensure_connected()?;
        let json: Option<String> = self
            .conn
            .client
            .hget(self.conn.keys.presence_sockets(), socket_id)
            .await
            .map_err(|e| state_error(&e))?;
        json.as_deref().map(decode).transpose()
    }

    async fn purge_node(&self, node_id: &str) -> StateResult<Vec<OnlineSocket>> {
        let k = &self.conn.keys;
        let jsons: Vec<String> = self
            .conn
            .eval(
                &scripts::PURGE_NODE_PRESENCE,
                vec![k.node_sockets(node_id), k.presence_sockets()],
                vec![k.prefix().to_owned()],
            )
            .await?;
        jsons.iter().map(|j| decode(j)).collect()
    }
}

/// Bans on Redis; a ban with an expiry is stored with a matching Redis TTL.
///
/// Redis may lose every ban (the shipped Redis keeps nothing on disk), so each node also keeps
/// the bans it knows in a book: those it stored or read, those other nodes announced, and all of
/// Redis's at every [`RedisBans::sync`]. A marker key holds a random epoch, written by the first
/// node to find it missing; a node that sees a different epoch than at its last sync knows Redis
/// lost its data and writes its book back (`SET NX`, so a ban stored meanwhile wins).
#[derive(Debug)]
pub struct RedisBans {
    pub(crate) conn: Conn,
    book: Mutex<BanBook>,
}

#[derive(Debug, Default)]
struct BanBook {
    bans: HashMap<String, Ban>,
    /// The marker's value at this node's last sync.
    epoch: Option<String>,
}

/// What [`RedisBans::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BanSync {
    /// Bans this node wrote back because Redis had lost them.
    pub reregistered: usize,
    /// Every ban in force cluster-wide after the sync.
    pub active: Vec<Ban>,
}

/// Ban records read per `MGET` when a node loads every ban.
const BAN_LOAD_BATCH: usize = 500;

/// A value no other node picks for the epoch marker (only the first `SET NX` wins anyway).
fn fresh_epoch() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

impl RedisBans {
    pub(crate) fn new(conn: Conn) -> Self {
        Self {
            conn,
            book: Mutex::default(),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, BanBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a ban this node heard of (a `user_banned` notice from another node).
    pub fn remember(&self, ban: Ban) {
        if ban.is_active_at(Utc::now()) {
            self.book().bans.insert(ban.user_id.clone(), ban);
        }
    }

    /// The bans in force that this node knows of.
    pub fn known(&self) -> Vec<Ban> {
        let now = Utc::now();
        let mut book = self.book();
        book.bans.retain(|_, b| b.is_active_at(now));
        book.bans.values().cloned().collect()
    }

    async fn epoch(&self) -> StateResult<Option<String>> {
        self.conn
            .client
            .get(self.conn.keys.bans_marker())
            .await
            .map_err(|e| state_error(&e))
    }

    /// Makes Redis and this node agree on the bans: writes the book back when Redis lost its data
    /// (a new epoch), then reloads the book from Redis. Call it at start-up (so a restarted node
    /// knows every ban), after every reconnect, and from time to time (so unbans made through
    /// other nodes leave the book).
    pub async fn sync(&self) -> StateResult<BanSync> {
        self.conn.ensure_connected()?;
        let marker = self.conn.keys.bans_marker();
        let epoch = match self.epoch().await? {
            Some(e) => e,
            None => {
                let _: Value = self
                    .conn
                    .client
                    .set(&marker, fresh_epoch(), None, Some(SetOptions::NX), false)
                    .await
                    .map_err(|e| state_error(&e))?;
                self.epoch()
                    .await?
                    .ok_or_else(|| StateError::Backend("the bans epoch marker vanished".into()))?
            }
        };
        let (previous, book) = {
            let book = self.book();
            (
                book.epoch.clone(),
                book.bans.values().cloned().collect::<Vec<_>>(),
            )
        };
        let mut reregistered = 0;
        if previous.as_ref() != Some(&epoch) {
            let now = Utc::now();
            for ban in book.iter().filter(|b| b.is_active_at(now)) {
                if self.store(ban, Some(SetOptions::NX)).await? {
                    reregistered += 1;
                }
            }
        }
        let mut loaded = HashMap::new();
        let keys = self.conn.scan_keys(&self.conn.keys.ban_pattern()).await?;
        // Every prefixed key shares the prefix's hash tag on a Redis Cluster, so MGET works there
        // too; a key that expired since the SCAN reads as nil.
        for chunk in keys.chunks(BAN_LOAD_BATCH) {
            let jsons: Vec<Option<String>> = self
                .conn
                .client
                .mget(chunk.to_vec())
                .await
                .map_err(|e| state_error(&e))?;
            for (key, json) in chunk.iter().zip(jsons) {
                let Some(json) = json else { continue };
                match decode::<Ban>(&json) {
                    Ok(ban) if ban.is_active_at(Utc::now()) => {
                        loaded.insert(ban.user_id.clone(), ban);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%key, error = %e, "unreadable ban record"),
                }
            }
        }
        let active = loaded.values().cloned().collect();
        let mut book = self.book();
        book.bans = loaded;
        book.epoch = Some(epoch);
        if reregistered > 0 {
            tracing::info!(reregistered, "wrote back bans that Redis had lost");
        }
        Ok(BanSync {
            reregistered,
            active,
        })
    }

    /// Writes one ban with its TTL; `false` when it has lapsed or `NX` found one already.
    async fn store(&self, ban: &Ban, options: Option<SetOptions>) -> StateResult<bool> {
        let key = self.conn.keys.ban(&ban.user_id);
        let expiry = match ban.expires_at {
            None => None,
            Some(at) => {
                let ms = (at - Utc::now()).num_milliseconds();
                if ms <= 0 {
                    return Ok(false);
                }
                Some(Expiration::PX(ms))
            }
        };
        let written: Value = self
            .conn
            .client
            .set(key, encode(ban)?, expiry, options, false)
            .await
            .map_err(|e| state_error(&e))?;
        Ok(!written.is_null())
    }
}

#[async_trait]
impl BanList for RedisBans {
    async fn ban(&self, ban: Ban) -> StateResult<()> {
        self.conn.ensure_connected()?;
        let lapsed = ban.expires_at.is_some_and(|at| at <= Utc::now());
        if lapsed {
            // Storing it would only shadow nothing, but it must replace (lift) any earlier ban,
            // as the in-memory backend does.
            let _: i64 = self
                .conn
                .client
                .del(self.conn.keys.ban(&ban.user_id))
                .await
                .map_err(|e| state_error(&e))?;
            self.book().bans.remove(&ban.user_id);
            return Ok(());
        }
        self.store(&ban, None).await?;
        self.remember(ban);
        Ok(())
    }

    async fn unban(&self, user_id: &str) -> StateResult<bool> {
        self.conn.ensure_connected()?;
        let removed: i64 = self
            .conn
            .client
            .del(self.conn.keys.ban(user_id))
            .await
            .map_err(|e| state_error(&e))?;
        self.book().bans.remove(user_id);
        Ok(removed > 0)
    }

    async fn active(&self, user_id: &str) -> StateResult<Option<Ban>> {
        self.conn.ensure_connected()?;
        let json: Option<String> = self
            .conn
            .client
            .get(self.conn.keys.ban(user_id))
            .await
            .map_err(|e| state_error(&e))?;
        let now = Utc::now();
        let ban: Option<Ban> = json.as_deref().map(decode).transpose()?;
        // The TTL has millisecond precision; the record decides at the boundary.
        if let Some(ban) = ban.filter(|b| b.is_active_at(now)) {
            self.remember(ban.clone());
            return Ok(Some(ban));
        }
        let known = self
            .book()
            .bans
            .get(user_id)
            .filter(|b| b.is_active_at(now))
            .cloned();
        let Some(known) = known else {
            return Ok(None);
        };
        // Redis has no ban but this node knows one: lifted elsewhere if Redis still holds the
        // data of the last sync (or this node never synced, so knows of no loss), lost with
        // Redis's data otherwise (and still in force).
        let epoch = self.epoch().await?;
        let synced = self.book().epoch.clone();
        if synced.is_none() || epoch == synced {
            self.book().bans.remove(user_id);
            return Ok(None);
        }
        Ok(Some(known))
    }
}

/// History on Redis: one stream per scope, trimmed to `capacity` entries on every append, with
/// a TTL restarted by every append. A room's stream is deleted with the room, and a message for
/// a room that no longer exists is not stored.
#[derive(Debug)]
pub struct RedisHistory {
    pub(crate) conn: Conn,
    pub(crate) capacity: usize,
    pub(crate) ttl: Duration,
}

#[async_trait]
impl History for RedisHistory {
    async fn append(&self, scope: &HistoryScope, message: serde_json::Value) -> StateResult<()> {
        let k = &self.conn.keys;
        let stream = k.history(scope);
        let (guard, must_exist) = match scope {
            HistoryScope::Room(room_id) => (k.room(room_id), "1"),
            _ => (stream.clone(), "0"),
        };
        let _: i64 = self
            .conn
            .eval(
                &scripts::APPEND_HISTORY,
                vec![stream, guard],
                vec![
                    encode(&message)?,
                    self.capacity.max(1).to_string(),
                    millis(self.ttl).to_string(),
                    must_exist.to_owned(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn recent(
        &self,
        scope: &HistoryScope,
        limit: usize,
    ) -> StateResult<Vec<serde_json::Value>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.conn.ensure_connected()?;
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .conn
            .client
            .xrevrange(
                self.conn.keys.history(scope),
                "+",
                "-",
                Some(u64::try_from(limit).unwrap_or(u64::MAX)),
            )
            .await
            .map_err(|e| state_error(&e))?;
        let mut out = Vec::with_capacity(entries.len());
        for (_, fields) in entries.into_iter().rev() {
            if let Some((_, json)) = fields.into_iter().find(|(f, _)| f == "m") {
                out.push(decode(&json)?);
            }
        }
        Ok(out)
    }
}

/// Game sequence numbers on Redis (`INCR`), each counter expiring once its game is idle.
#[derive(Debug)]
pub struct RedisGames {
    pub(crate) conn: Conn,
    pub(crate) ttl: Duration,
}

#[async_trait]
impl GameSequence for RedisGames {
    async fn next(&self, game_id: &str) -> StateResult<u64> {
        let n: i64 = self
            .conn
            .eval(
                &scripts::NEXT_GAME_SEQ,
                vec![self.conn.keys.game_seq(game_id)],
                vec![millis(self.ttl).to_string()],
            )
            .await?;
        u64::try_from(n).map_err(|_| StateError::Corrupt(format!("game sequence {n}")))
    }
}

/// Node registry on Redis: `cluster:stats:<serverId>` keys with a TTL, listed with `SCAN`.
#[derive(Debug)]
pub struct RedisNodes {
    pub(crate) conn: Conn,
    pub(crate) ttl: Duration,
    /// The last record this process published, republished by a resync.
    pub(crate) last_published: Mutex<Option<NodeStats>>,
    /// The liveness TTL this node's records declare, in milliseconds; 0 until the first liveness
    /// beat has landed (a record must never declare a key that is not there yet).
    liveness_ttl_ms: AtomicU64,
}

impl RedisNodes {
    pub(crate) fn new(conn: Conn, ttl: Duration) -> Self {
        Self {
            conn,
            ttl,
            last_published: Mutex::new(None),
            liveness_ttl_ms: AtomicU64::new(0),
        }
    }

    /// From now on, records say that this node writes a liveness key with this TTL.
    pub(crate) fn declare_liveness(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.liveness_ttl_ms.store(ms, Ordering::Release);
    }

    pub(crate) fn last_published(&self) -> Option<NodeStats> {
        self.last_published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl NodeRegistry for RedisNodes {
    async fn publish(&self, stats: &NodeStats) -> StateResult<()> {
        self.conn.ensure_connected()?;
        let ttl_ms = i64::try_from(self.ttl.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut stats = stats.clone();
        loop {
            let declared = self.liveness_ttl_ms.load(Ordering::Acquire);
            stats.liveness_ttl_ms = (declared != 0).then_some(declared);
            let _: Value = self
                .conn
                .client
                .set(
                    keys::stats_key(&stats.server_id),
                    encode(&stats)?,
                    Some(Expiration::PX(ttl_ms)),
                    None,
                    false,
                )
                .await
                .map_err(|e| state_error(&e))?;
            // The liveness beat republishes once it declares its key; a record read before that
            // and written after must not have the last word.
            if self.liveness_ttl_ms.load(Ordering::Acquire) == declared {
                break;
            }
        }
        *self
            .last_published
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(stats);
        Ok(())
    }

    async fn withdraw(&self, server_id: &str) -> StateResult<()> {
        self.conn.ensure_connected()?;
        let _: i64 = self
            .conn
            .client
            .del(keys::stats_key(server_id))
            .await
            .map_err(|e| state_error(&e))?;
        let mut last = self
            .last_published
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_some_and(|s| s.server_id == server_id) {
            *last = None;
        }
        Ok(())
    }

    async fn live_nodes(&self) -> StateResult<Vec<NodeStats>> {
        let mut nodes: Vec<NodeStats> = self
            .scan_records()
            .await?
            .into_iter()
            .filter_map(|(_, record)| record)
            .collect();
        nodes.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        nodes.dedup_by(|a, b| a.server_id == b.server_id);
        Ok(nodes)
    }
}

impl RedisNodes {
    /// Every stats key's server id with its record, `None` where the record is not one this crate
    /// can read (a Node.js node of the original design writes its own shape; it is alive all the
    /// same).
    pub(crate) async fn scan_records(&self) -> StateResult<Vec<(String, Option<NodeStats>)>> {
        let keys = self.conn.scan_keys(keys::STATS_KEY_PATTERN).await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(id) = keys::server_id_of_stats_key(&key) else {
                continue;
            };
            // A key can expire between SCAN and GET; that node is simply gone.
            let json: Option<String> = self
                .conn
                .client
                .get(&key)
                .await
                .map_err(|e| state_error(&e))?;
            let Some(json) = json else { continue };
            let record = match decode::<NodeStats>(&json) {
                Ok(stats) => Some(stats),
                Err(e) => {
                    tracing::debug!(%key, error = %e, "stats record in another shape");
                    None
                }
            };
            out.push((id.to_owned(), record));
        }
        Ok(out)
    }
}

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
                conn,
                ttl: retention.game_sequence,
            }),
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
