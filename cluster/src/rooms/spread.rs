//! The room registry in the spread key layout (`docs/sharded-adapter.md`, section 5): each
//! room's keys under a hash tag of their own, the rooms and unjoined-rooms indexes in
//! [`INDEX_BUCKETS`] buckets, a creator's unjoined rooms on the creator's slot, a node's
//! memberships on the node's. Every script touches one tag; what spans tags is a sequence of
//! steps, each safe to repeat, ordered so that a crash between two leaves nothing a later step
//! or the sweep does not clean up:
//!
//! - create: take a place among the creator's unjoined rooms (the per-user limit stays exact),
//!   add the index entries, then write the record (which expires at the unjoined deadline until
//!   a first join). A crash before the record leaves index entries without a room: listings skip
//!   them and the sweep removes them at the deadline.
//! - join: the membership token in the node's set first (a purge then finds it), then the join
//!   script; a refused join takes the token back. The first join takes the room out of the
//!   unjoined indexes afterwards (a leftover entry is removed by the sweep).
//! - leave: the room first, then the node's token (a leftover token is a no-op for a purge), then
//!   the index entry of a room deleted by it.
//! - purge: per room, one script removing the dead node's members, then the node's set.

use chrono::Utc;
use fred::prelude::*;

use super::{
    CreateOutcome, JoinOutcome, LeaveOutcome, Member, PurgedMembership, RedisRooms, RoomRecord,
};
use crate::error::{StateError, StateResult};
use crate::history::HistoryScope;
use crate::keys::{INDEX_BUCKETS, index_bucket};
use crate::redis::conn::{decode, each_limited, encode, millis};
use crate::redis::scripts::{self, membership_token, split_membership_token};

/// Unjoined rooms one sweep looks at per bucket (the rest wait for the next listing or count).
const SWEEP_BATCH: usize = 100;

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn int(v: &[Value], i: usize) -> i64 {
    v.get(i).and_then(Value::as_i64).unwrap_or_default()
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or_default()
}

fn text(v: &Value) -> Option<String> {
    v.as_string()
}

/// Membership tokens grouped by room (rooms in the order first seen): room id, socket ids.
pub(crate) fn tokens_by_room(tokens: &[String]) -> Vec<(String, Vec<String>)> {
    let mut rooms: Vec<(String, Vec<String>)> = Vec::new();
    let mut at = std::collections::HashMap::new();
    for t in tokens {
        let Some((room, sid)) = split_membership_token(t) else {
            continue;
        };
        let i = *at.entry(room.to_owned()).or_insert_with(|| {
            rooms.push((room.to_owned(), Vec::new()));
            rooms.len() - 1
        });
        rooms[i].1.push(sid.to_owned());
    }
    rooms
}

impl RedisRooms {
    /// Every key of one room: record, members, member records, history (one tag).
    pub(crate) fn room_keys(&self, room_id: &str) -> Vec<String> {
        let k = &self.conn.keys;
        vec![
            k.room(room_id),
            k.room_members(room_id),
            k.room_member_records(room_id),
            k.history(&HistoryScope::Room(room_id.to_owned())),
        ]
    }

    pub(super) async fn create_spread(
        &self,
        room: RoomRecord,
        max_unjoined: usize,
    ) -> StateResult<CreateOutcome> {
        let k = &self.conn.keys;
        let id = room.id.clone();
        // Asked first, so that a taken id is reported as such even to a creator at the limit.
        let exists: i64 = self.conn.call("EXISTS", vec![k.room(&id).into()]).await?;
        if exists == 1 {
            return Ok(CreateOutcome::Exists);
        }
        let now = now_ms();
        let deadline = now.saturating_add(millis(self.retention.unjoined_room));
        let mine = k.unjoined_rooms_of(&room.created_by);
        let reserved: i64 = self
            .conn
            .eval(
                &scripts::RESERVE_UNJOINED,
                vec![mine.clone()],
                vec![
                    now.to_string(),
                    deadline.to_string(),
                    max_unjoined.min(1 << 53).to_string(),
                    id.clone(),
                ],
            )
            .await?;
        if reserved == -1 {
            return Ok(CreateOutcome::CreatorAtLimit);
        }
        let bucket = index_bucket(&id);
        let created_us = Utc::now().timestamp_micros();
        let _: i64 = self
            .conn
            .call(
                "ZADD",
                vec![
                    k.rooms_bucket(bucket).into(),
                    "NX".into(),
                    created_us.into(),
                    id.clone().into(),
                ],
            )
            .await?;
        let _: i64 = self
            .conn
            .call(
                "ZADD",
                vec![
                    k.unjoined_bucket(bucket).into(),
                    deadline.into(),
                    id.clone().into(),
                ],
            )
            .await?;
        let keys = self.room_keys(&id);
        let created: i64 = self
            .conn
            .eval(
                &scripts::CREATE_ROOM_SPREAD,
                vec![keys[0].clone(), keys[3].clone()],
                vec![
                    encode(&room)?,
                    room.max_users.to_string(),
                    deadline.to_string(),
                    created_us.to_string(),
                ],
            )
            .await?;
        if created == 1 {
            return Ok(CreateOutcome::Created);
        }
        // Another creation won the id meanwhile: give back the place taken above. The index
        // entries name a room that exists, so they stay.
        if reserved == 1 {
            let _: i64 = self.conn.call("ZREM", vec![mine.into(), id.into()]).await?;
        }
        Ok(CreateOutcome::Exists)
    }

    pub(super) async fn join_spread(
        &self,
        room_id: &str,
        member: Member,
    ) -> StateResult<JoinOutcome> {
        let k = &self.conn.keys;
        let token = membership_token(room_id, &member.socket_id);
        let node_set = k.node_memberships(&member.node_id);
        let _: i64 = self
            .conn
            .call("SADD", vec![node_set.clone().into(), token.clone().into()])
            .await?;
        let r: Vec<Value> = self
            .conn
            .eval(
                &scripts::JOIN_ROOM_SPREAD,
                self.room_keys(room_id),
                vec![
                    member.socket_id.clone(),
                    encode(&member)?,
                    now_ms().to_string(),
                ],
            )
            .await?;
        let user_count = count(int(&r, 1));
        let code = int(&r, 0);
        if code != 1 && code != 2 {
            let _: i64 = self
                .conn
                .call("SREM", vec![node_set.into(), token.into()])
                .await?;
        }
        Ok(match code {
            1 => {
                if let Some(creator) = r.get(2).and_then(text) {
                    let bucket = k.unjoined_bucket(index_bucket(room_id));
                    let _: i64 = self
                        .conn
                        .call("ZREM", vec![bucket.into(), room_id.into()])
                        .await?;
                    let _: i64 = self
                        .conn
                        .call(
                            "ZREM",
                            vec![k.unjoined_rooms_of(&creator).into(), room_id.into()],
                        )
                        .await?;
                }
                JoinOutcome::Joined { user_count }
            }
            2 => JoinOutcome::AlreadyMember { user_count },
            -2 => JoinOutcome::Full,
            _ => JoinOutcome::NoSuchRoom,
        })
    }

    pub(super) async fn leave_spread(
        &self,
        room_id: &str,
        socket_id: &str,
    ) -> StateResult<LeaveOutcome> {
        let k = &self.conn.keys;
        let r: Vec<Value> = self
            .conn
            .eval(
                &scripts::LEAVE_ROOM_SPREAD,
                self.room_keys(room_id),
                vec![socket_id.to_owned()],
            )
            .await?;
        if int(&r, 0) != 1 {
            return Ok(LeaveOutcome::NotMember);
        }
        let json = r.get(3).and_then(text).unwrap_or_default();
        let member: Member = decode(&json)?;
        let _: i64 = self
            .conn
            .call(
                "SREM",
                vec![
                    k.node_memberships(&member.node_id).into(),
                    membership_token(room_id, socket_id).into(),
                ],
            )
            .await?;
        let room_deleted = int(&r, 2) == 1;
        if room_deleted {
            self.unindex(room_id).await?;
        }
        Ok(LeaveOutcome::Left {
            user_count: count(int(&r, 1)),
            room_deleted,
        })
    }

    /// Removes a deleted room's index entries.
    pub(crate) async fn unindex(&self, room_id: &str) -> StateResult<()> {
        let k = &self.conn.keys;
        let bucket = index_bucket(room_id);
        for key in [k.rooms_bucket(bucket), k.unjoined_bucket(bucket)] {
            let _: i64 = self
                .conn
                .call("ZREM", vec![key.into(), room_id.into()])
                .await?;
        }
        Ok(())
    }

    /// Deletes the rooms whose unjoined deadline has passed with nobody in them, and drops the
    /// index entries that name no room (left by a crash during a creation). Looks at up to
    /// [`SWEEP_BATCH`] due entries per bucket.
    async fn sweep_spread(&self) -> StateResult<()> {
        let k = &self.conn.keys;
        let now = now_ms();
        let due: Vec<Vec<String>> = each_limited(
            IntoIterator::into_iter(0..INDEX_BUCKETS)
                .map(|b| {
                    self.conn.call::<Vec<String>>(
                        "ZRANGEBYSCORE",
                        vec![
                            k.unjoined_bucket(b).into(),
                            "-inf".into(),
                            now.into(),
                            "LIMIT".into(),
                            0.into(),
                            SWEEP_BATCH.to_string().into(),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        let ids: Vec<String> = due.into_iter().flatten().collect();
        each_limited(
            IntoIterator::into_iter(ids)
                .map(|id| async move {
                    let r: Vec<Value> = self
                        .conn
                        .eval(
                            &scripts::EXPIRE_IF_UNJOINED_SPREAD,
                            self.room_keys(&id),
                            vec![now.to_string()],
                        )
                        .await?;
                    let bucket = k.unjoined_bucket(index_bucket(&id));
                    match int(&r, 0) {
                        0 => self.unindex(&id).await,
                        2 => {
                            let deadline = r.get(1).and_then(text).unwrap_or_default();
                            self.conn
                                .call::<i64>(
                                    "ZADD",
                                    vec![bucket.into(), "XX".into(), deadline.into(), id.into()],
                                )
                                .await
                                .map(drop)
                        }
                        _ => self
                            .conn
                            .call::<i64>("ZREM", vec![bucket.into(), id.into()])
                            .await
                            .map(drop),
                    }
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok(())
    }

    /// Every indexed room id, in creation order (ties by id), after a sweep.
    async fn indexed_ids(&self) -> StateResult<Vec<String>> {
        self.sweep_spread().await?;
        let k = &self.conn.keys;
        let buckets: Vec<Vec<String>> = each_limited(
            IntoIterator::into_iter(0..INDEX_BUCKETS)
                .map(|b| {
                    self.conn.call::<Vec<String>>(
                        "ZRANGE",
                        vec![
                            k.rooms_bucket(b).into(),
                            0.into(),
                            (-1).into(),
                            "WITHSCORES".into(),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        let mut entries = Vec::new();
        for flat in buckets {
            for pair in flat.chunks_exact(2) {
                let score: f64 = pair[1]
                    .parse()
                    .map_err(|_| StateError::Corrupt(format!("rooms index score `{}`", pair[1])))?;
                entries.push((score, pair[0].clone()));
            }
        }
        entries.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(entries.into_iter().map(|(_, id)| id).collect())
    }

    pub(super) async fn list_spread(&self) -> StateResult<Vec<RoomRecord>> {
        Ok(self
            .list_with_counts_spread()
            .await?
            .into_iter()
            .map(|(room, _)| room)
            .collect())
    }

    pub(super) async fn list_with_counts_spread(&self) -> StateResult<Vec<(RoomRecord, usize)>> {
        let ids = self.indexed_ids().await?;
        let k = &self.conn.keys;
        let found: Vec<Option<(RoomRecord, usize)>> = each_limited(
            IntoIterator::into_iter(ids)
                .map(|id| async move {
                    let json: Option<String> = self
                        .conn
                        .call("HGET", vec![k.room(&id).into(), "record".into()])
                        .await?;
                    let Some(json) = json else {
                        // An entry left by a crash during a creation: the sweep removes it.
                        return Ok(None);
                    };
                    let n: i64 = self
                        .conn
                        .call("ZCARD", vec![k.room_members(&id).into()])
                        .await?;
                    Ok::<_, StateError>(Some((decode(&json)?, count(n))))
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok(found.into_iter().flatten().collect())
    }

    pub(super) async fn count_spread(&self) -> StateResult<usize> {
        self.sweep_spread().await?;
        let k = &self.conn.keys;
        let sizes: Vec<i64> = each_limited(
            IntoIterator::into_iter(0..INDEX_BUCKETS)
                .map(|b| {
                    self.conn
                        .call::<i64>("ZCARD", vec![k.rooms_bucket(b).into()])
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok(sizes.into_iter().map(count).sum())
    }

    pub(super) async fn purge_node_spread(
        &self,
        node_id: &str,
    ) -> StateResult<Vec<PurgedMembership>> {
        let node_set = self.conn.keys.node_memberships(node_id);
        let tokens: Vec<String> = self
            .conn
            .call("SMEMBERS", vec![node_set.clone().into()])
            .await?;
        // One script per room, removing all of the node's members there at once, so the counts
        // reported are the counts after the purge.
        let rooms = tokens_by_room(&tokens);
        let per_room: Vec<Vec<PurgedMembership>> = each_limited(
            IntoIterator::into_iter(rooms)
                .map(|(room, sids)| async move {
                    let mut args = vec!["1".to_owned()];
                    args.extend(sids);
                    let r: Vec<Value> = self
                        .conn
                        .eval(&scripts::REMOVE_MEMBERS_SPREAD, self.room_keys(&room), args)
                        .await?;
                    let user_count = count(int(&r, 0));
                    let room_deleted = int(&r, 1) == 1;
                    if room_deleted {
                        self.unindex(&room).await?;
                    }
                    let jsons = r
                        .get(2)
                        .cloned()
                        .and_then(|v| v.into_array().into_iter().map(|j| j.as_string()).collect())
                        .unwrap_or_else(Vec::new);
                    jsons
                        .iter()
                        .map(|json| {
                            Ok(PurgedMembership {
                                room_id: room.clone(),
                                member: decode(json)?,
                                user_count,
                                room_deleted,
                            })
                        })
                        .collect::<StateResult<Vec<_>>>()
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        let _: i64 = self.conn.call("DEL", vec![node_set.into()]).await?;
        Ok(per_room.into_iter().flatten().collect())
    }
}
