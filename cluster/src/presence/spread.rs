//! Presence in the spread key layout (`docs/sharded-adapter.md`, section 5): a user's sockets in
//! one hash on the user's slot, every socket's record also in one of [`INDEX_BUCKETS`] bucket
//! hashes (by socket id: `find_socket` is one `HGET`, `online` one `HVALS` per bucket), a node's
//! socket ids on the node's slot.
//!
//! The steps keep one order everywhere: an entry in the user's hash implies one in the bucket,
//! which implies one in the node's set. A connect writes node set, bucket, user hash; a
//! disconnect and a purge remove them the other way round. A crash between two steps thus
//! leaves only entries that the purge of the node (which walks its set) removes.

use super::redis::rename_args;
use super::{OnlineSocket, RedisPresence, Rename};
use crate::error::StateResult;
use crate::keys::{INDEX_BUCKETS, index_bucket};
use crate::redis::conn::{decode, each_limited, encode};
use crate::redis::scripts;

impl RedisPresence {
    fn bucket_of(&self, socket_id: &str) -> String {
        self.conn.keys.sockets_bucket(index_bucket(socket_id))
    }

    /// The socket's record in its bucket.
    pub(crate) async fn record(&self, socket_id: &str) -> StateResult<Option<OnlineSocket>> {
        let json: Option<String> = self
            .conn
            .call(
                "HGET",
                vec![self.bucket_of(socket_id).into(), socket_id.into()],
            )
            .await?;
        json.as_deref().map(decode).transpose()
    }

    /// Removes one socket from its user's hash, then from its bucket; returns the user's
    /// sockets left and whether it was in the user's hash.
    pub(crate) async fn forget(&self, user_id: &str, socket_id: &str) -> StateResult<(bool, i64)> {
        let r: Vec<i64> = self
            .conn
            .eval(
                &scripts::USER_SOCKET_REMOVE,
                vec![self.conn.keys.presence_user(user_id)],
                vec![socket_id.to_owned()],
            )
            .await?;
        let _: i64 = self
            .conn
            .call(
                "HDEL",
                vec![self.bucket_of(socket_id).into(), socket_id.into()],
            )
            .await?;
        Ok((
            r.first().copied() == Some(1),
            r.get(1).copied().unwrap_or_default(),
        ))
    }

    pub(crate) async fn socket_connected_spread(&self, socket: OnlineSocket) -> StateResult<bool> {
        let k = &self.conn.keys;
        let sid = socket.socket_id.clone();
        let json = encode(&socket)?;
        // The same socket id seen before under another user or node (a resumed session): its
        // old entries go, as the classic script does.
        if let Some(old) = self.record(&sid).await? {
            if old.user_id != socket.user_id {
                let _: Vec<i64> = self
                    .conn
                    .eval(
                        &scripts::USER_SOCKET_REMOVE,
                        vec![k.presence_user(&old.user_id)],
                        vec![sid.clone()],
                    )
                    .await?;
            }
            if old.node_id != socket.node_id {
                let _: i64 = self
                    .conn
                    .call(
                        "SREM",
                        vec![k.node_sockets(&old.node_id).into(), sid.clone().into()],
                    )
                    .await?;
            }
        }
        let _: i64 = self
            .conn
            .call(
                "SADD",
                vec![k.node_sockets(&socket.node_id).into(), sid.clone().into()],
            )
            .await?;
        let _: i64 = self
            .conn
            .call(
                "HSET",
                vec![
                    self.bucket_of(&sid).into(),
                    sid.clone().into(),
                    json.clone().into(),
                ],
            )
            .await?;
        let first: i64 = self
            .conn
            .eval(
                &scripts::USER_SOCKET_ADD,
                vec![k.presence_user(&socket.user_id)],
                vec![sid, json],
            )
            .await?;
        Ok(first == 1)
    }

    pub(super) async fn socket_disconnected_spread(
        &self,
        user_id: &str,
        socket_id: &str,
    ) -> StateResult<bool> {
        let old = self.record(socket_id).await?;
        let (removed, left) = self.forget(user_id, socket_id).await?;
        if let Some(old) = old {
            let _: i64 = self
                .conn
                .call(
                    "SREM",
                    vec![
                        self.conn.keys.node_sockets(&old.node_id).into(),
                        socket_id.into(),
                    ],
                )
                .await?;
        }
        Ok(removed && left == 0)
    }

    pub(super) async fn rename_spread(&self, rename: Rename<'_>) -> StateResult<()> {
        let json: Option<String> = self
            .conn
            .eval(
                &scripts::USER_SOCKET_RENAME,
                vec![self.conn.keys.presence_user(rename.user_id)],
                rename_args(rename),
            )
            .await?;
        let socket_id = rename.socket_id;
        if let Some(json) = json {
            let _: i64 = self
                .conn
                .eval(
                    &scripts::HSET_IF_PRESENT,
                    vec![self.bucket_of(socket_id)],
                    vec![socket_id.to_owned(), json],
                )
                .await?;
        }
        Ok(())
    }

    pub(super) async fn online_spread(&self) -> StateResult<Vec<OnlineSocket>> {
        let k = &self.conn.keys;
        let buckets: Vec<Vec<String>> = each_limited(
            IntoIterator::into_iter(0..INDEX_BUCKETS)
                .map(|b| {
                    self.conn
                        .call::<Vec<String>>("HVALS", vec![k.sockets_bucket(b).into()])
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        buckets.iter().flatten().map(|j| decode(j)).collect()
    }

    pub(super) async fn sockets_of_spread(&self, user_id: &str) -> StateResult<Vec<OnlineSocket>> {
        let jsons: Vec<String> = self
            .conn
            .call("HVALS", vec![self.conn.keys.presence_user(user_id).into()])
            .await?;
        jsons.iter().map(|j| decode(j)).collect()
    }

    pub(super) async fn find_socket_spread(
        &self,
        socket_id: &str,
    ) -> StateResult<Option<OnlineSocket>> {
        self.record(socket_id).await
    }

    pub(super) async fn purge_node_spread(&self, node_id: &str) -> StateResult<Vec<OnlineSocket>> {
        let node_set = self.conn.keys.node_sockets(node_id);
        let sids: Vec<String> = self
            .conn
            .call("SMEMBERS", vec![node_set.clone().into()])
            .await?;
        let records: Vec<Option<OnlineSocket>> = each_limited(
            IntoIterator::into_iter(sids)
                .map(|sid| async move {
                    let Some(record) = self.record(&sid).await? else {
                        return Ok(None);
                    };
                    self.forget(&record.user_id, &sid).await?;
                    Ok::<_, crate::error::StateError>(Some(record))
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        // One record per user, in the order first seen; reported when no socket is left.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<OnlineSocket> = records
            .into_iter()
            .flatten()
            .filter(|r| seen.insert(r.user_id.clone()))
            .collect();
        let offline: Vec<Option<OnlineSocket>> = each_limited(
            IntoIterator::into_iter(firsts)
                .map(|r| async move {
                    let left: i64 = self
                        .conn
                        .call(
                            "HLEN",
                            vec![self.conn.keys.presence_user(&r.user_id).into()],
                        )
                        .await?;
                    Ok::<_, crate::error::StateError>((left == 0).then_some(r))
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        let _: i64 = self.conn.call("DEL", vec![node_set.into()]).await?;
        Ok(offline.into_iter().flatten().collect())
    }
}
