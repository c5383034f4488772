//! Presence on Redis.

use async_trait::async_trait;
use fred::prelude::*;

use super::{OnlineSocket, Presence, Rename};
use crate::error::StateResult;
use crate::redis::conn::{Conn, decode, encode, state_error};
use crate::redis::scripts;

/// Presence on Redis.
#[derive(Debug)]
pub struct RedisPresence {
    pub(crate) conn: Conn,
}

/// The arguments both rename scripts (`SET_USERNAME`, `USER_SOCKET_RENAME`) take, in order.
pub(super) fn rename_args(rename: Rename<'_>) -> Vec<String> {
    vec![
        rename.socket_id.to_owned(),
        rename.user_id.to_owned(),
        rename.username.to_owned(),
    ]
}

#[async_trait]
impl Presence for RedisPresence {
    async fn socket_connected(&self, socket: OnlineSocket) -> StateResult<bool> {
        if self.conn.keys.is_spread() {
            return self.socket_connected_spread(socket).await;
        }
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
        if self.conn.keys.is_spread() {
            return self.socket_disconnected_spread(user_id, socket_id).await;
        }
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

    async fn rename(&self, rename: Rename<'_>) -> StateResult<()> {
        if self.conn.keys.is_spread() {
            return self.rename_spread(rename).await;
        }
        let _: i64 = self
            .conn
            .eval(
                &scripts::SET_USERNAME,
                vec![self.conn.keys.presence_sockets()],
                rename_args(rename),
            )
            .await?;
        Ok(())
    }

    async fn online(&self) -> StateResult<Vec<OnlineSocket>> {
        if self.conn.keys.is_spread() {
            return self.online_spread().await;
        }
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
        if self.conn.keys.is_spread() {
            return self.sockets_of_spread(user_id).await;
        }
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
        if self.conn.keys.is_spread() {
            return self.find_socket_spread(socket_id).await;
        }
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
        if self.conn.keys.is_spread() {
            return self.purge_node_spread(node_id).await;
        }
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
