//! Room registry on Redis.

use async_trait::async_trait;
use chrono::Utc;
use fred::prelude::*;

use super::{
    CreateOutcome, JoinOutcome, LeaveOutcome, Member, PurgedMembership, RoomRecord, RoomRegistry,
};
use crate::error::StateResult;
use crate::history::HistoryScope;
use crate::redis::conn::{Conn, decode, encode, millis, state_error};
use crate::redis::scripts::{self, membership_token};
use crate::retention::Retention;

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
        if self.conn.keys.is_spread() {
            return self.create_spread(room, max_unjoined).await;
        }
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
        if self.conn.keys.is_spread() {
            return self.list_spread().await;
        }
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
        if self.conn.keys.is_spread() {
            return self.join_spread(room_id, member).await;
        }
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
        if self.conn.keys.is_spread() {
            return self.leave_spread(room_id, socket_id).await;
        }
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
        if self.conn.keys.is_spread() {
            return self.count_spread().await;
        }
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
        if self.conn.keys.is_spread() {
            return self.list_with_counts_spread().await;
        }
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
        if self.conn.keys.is_spread() {
            return self.purge_node_spread(node_id).await;
        }
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
