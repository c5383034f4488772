//! Re-registering a node's state in the spread key layout: the classic script's work, done as
//! steps that each touch one hash tag (`docs/sharded-adapter.md`, section 5). Peers may see the
//! node's rooms briefly emptier while it runs; a room is deleted only if it is still empty and
//! joined at the end.

use std::collections::HashSet;

use chrono::Utc;

use super::RedisCluster;
use super::conn::{each_limited, encode};
use super::resync::LocalSnapshot;
use super::scripts::{self, membership_token};
use crate::error::{StateError, StateResult};
use crate::keys::index_bucket;
use crate::rooms::spread::tokens_by_room;

impl RedisCluster {
    /// Returns (sockets registered, memberships registered, rooms recreated).
    pub(super) async fn resync_spread(
        &self,
        snapshot: &LocalSnapshot,
    ) -> StateResult<(usize, usize, usize)> {
        let node = &self.config.node_id;
        let k = &self.conn.keys;
        let presence = &self.backends.presence;
        let rooms = &self.backends.rooms;

        // What Redis holds for this node goes first.
        let node_sockets = k.node_sockets(node);
        let sids: Vec<String> = self
            .conn
            .call("SMEMBERS", vec![node_sockets.clone().into()])
            .await?;
        each_limited(
            IntoIterator::into_iter(sids)
                .map(|sid| async move {
                    if let Some(old) = presence.record(&sid).await?
                        && old.node_id == *node
                    {
                        presence.forget(&old.user_id, &sid).await?;
                    }
                    Ok::<_, StateError>(())
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        let _: i64 = self.conn.call("DEL", vec![node_sockets.into()]).await?;

        let node_memberships = k.node_memberships(node);
        let tokens: Vec<String> = self
            .conn
            .call("SMEMBERS", vec![node_memberships.clone().into()])
            .await?;
        let old_rooms = tokens_by_room(&tokens);
        let mut touched: HashSet<String> = old_rooms.iter().map(|(r, _)| r.clone()).collect();
        each_limited(
            IntoIterator::into_iter(old_rooms)
                .map(|(room, sids)| async move {
                    let mut args = vec!["0".to_owned()];
                    args.extend(sids);
                    self.conn
                        .eval::<fred::types::Value>(
                            &scripts::REMOVE_MEMBERS_SPREAD,
                            rooms.room_keys(&room),
                            args,
                        )
                        .await
                        .map(drop)
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        let _: i64 = self
            .conn
            .call("DEL", vec![node_memberships.clone().into()])
            .await?;

        // Then what the node holds.
        each_limited(
            IntoIterator::into_iter(&snapshot.sockets)
                .map(|s| async move {
                    let mut s = s.clone();
                    s.node_id.clone_from(node);
                    presence.socket_connected_spread(s).await.map(drop)
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        let recreated: Vec<bool> = each_limited(
            IntoIterator::into_iter(&snapshot.memberships)
                .map(|m| {
                    let node_memberships = &node_memberships;
                    async move {
                        let mut member = m.member.clone();
                        member.node_id.clone_from(node);
                        let room_id = &m.room.id;
                        let _: i64 = self
                            .conn
                            .call(
                                "SADD",
                                vec![
                                    node_memberships.clone().into(),
                                    membership_token(room_id, &member.socket_id).into(),
                                ],
                            )
                            .await?;
                        let created_us = Utc::now().timestamp_micros();
                        let keys = rooms.room_keys(room_id);
                        let recreated: i64 = self
                            .conn
                            .eval(
                                &scripts::RESYNC_MEMBER_SPREAD,
                                keys[..3].to_vec(),
                                vec![
                                    encode(&m.room)?,
                                    m.room.max_users.to_string(),
                                    member.socket_id.clone(),
                                    encode(&member)?,
                                    created_us.to_string(),
                                ],
                            )
                            .await?;
                        if recreated == 1 {
                            let _: i64 = self
                                .conn
                                .call(
                                    "ZADD",
                                    vec![
                                        k.rooms_bucket(index_bucket(room_id)).into(),
                                        "NX".into(),
                                        created_us.into(),
                                        room_id.clone().into(),
                                    ],
                                )
                                .await?;
                        }
                        Ok::<_, StateError>(recreated == 1)
                    }
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        for m in &snapshot.memberships {
            touched.remove(&m.room.id);
        }
        each_limited(
            IntoIterator::into_iter(touched)
                .map(|room| async move {
                    let deleted: i64 = self
                        .conn
                        .eval(
                            &scripts::DELETE_IF_EMPTY_SPREAD,
                            rooms.room_keys(&room),
                            vec![],
                        )
                        .await?;
                    if deleted == 1 {
                        rooms.unindex(&room).await?;
                    }
                    Ok::<_, StateError>(())
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok((
            snapshot.sockets.len(),
            snapshot.memberships.len(),
            recreated.into_iter().filter(|r| *r).count(),
        ))
    }
}

/// The gateway spawns tasks awaiting these, so their futures must stay `Send` (checked when the
/// tests compile; the function never runs).
#[cfg(test)]
#[allow(dead_code)]
fn resync_futures_are_send(c: &RedisCluster, s: &LocalSnapshot) {
    fn send<T: Send>(_: T) {}
    send(c.resync(s));
    send(c.purge_own_leftovers());
    send(c.sync_bans());
}
