//! Presence of a single node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{OnlineSocket, Presence, Rename};
use crate::error::StateResult;
use crate::lock::lock;

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

    async fn rename(&self, rename: Rename<'_>) -> StateResult<()> {
        let mut table = lock(&self.table);
        if let Some((_, s)) = table.by_socket.get_mut(rename.socket_id)
            && s.user_id == rename.user_id
        {
            rename.username.clone_into(&mut s.username);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::*;

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
}
