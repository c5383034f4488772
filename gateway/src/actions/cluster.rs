//! What a node does about the rest of the cluster: peers that died (their users go offline and
//! leave their rooms), bans and announcements from other nodes, and Redis coming back after an
//! outage (the node re-registers what it holds). Called by `namespaces::cluster_events`.

use std::collections::{HashMap, HashSet};

use cluster::bus::{SystemAnnouncement, UserBanned};
use cluster::redis::{LocalMembership, LocalSnapshot, NodeLeft};
use cluster::{Member, OnlineSocket};
use serde_json::Value;

use crate::protocol::names::{ALL, MAIN};
use crate::protocol::outgoing::{room_member, user_presence};
use crate::protocol::rooms::{chat_room, chat_room_id, user_room};
use crate::sockets::{Session, Shared, emit};

/// Agrees with Redis on the bans (writing back those Redis lost) and disconnects the local
/// sockets of every banned user.
pub async fn sync_bans(shared: &Shared) -> Result<(), cluster::StateError> {
    let Some(redis) = shared.app.link.redis() else {
        return Ok(());
    };
    let sync = redis.sync_bans().await?;
    enforce_bans(shared, &sync.active).await;
    Ok(())
}

/// Disconnects the sockets this node holds of any user among `bans`.
async fn enforce_bans(shared: &Shared, bans: &[cluster::Ban]) {
    if bans.is_empty() {
        return;
    }
    let mut held = HashSet::new();
    for ns in ALL {
        if let Some(op) = shared.io.of(ns) {
            for socket in op.local().sockets() {
                if let Some(session) = Session::of(&socket) {
                    held.insert(session.user_id().to_owned());
                }
            }
        }
    }
    for ban in bans.iter().filter(|b| held.contains(&b.user_id)) {
        tracing::info!(user = %ban.user_id, "disconnecting a banned user found after a resync");
        if let Err(e) = super::admin::enforce_ban_locally(shared, &ban.user_id, &ban.reason).await {
            tracing::warn!(error = %e, user = %ban.user_id, "cannot enforce a ban locally");
        }
    }
}

/// Tells the clients about the users and memberships a departed node took with it:
/// `user offline` to everyone, `user left` to each room.
pub async fn announce_departures(shared: &Shared, left: &NodeLeft) {
    let Some(main) = shared.io.of(MAIN) else {
        return;
    };
    for socket in &left.went_offline {
        let payload = user_presence(&socket.user_id, &socket.username);
        let _ = emit::broadcast(shared, main.clone(), "user offline", &payload).await;
    }
    for p in &left.purged {
        let m = &p.member;
        let payload = room_member(
            &m.socket_id,
            &m.user_id,
            &m.username,
            &p.room_id,
            p.user_count,
        );
        let _ = emit::broadcast(
            shared,
            main.clone().to(chat_room(&p.room_id)),
            "user left",
            &payload,
        )
        .await;
    }
}

/// What this node holds on `/`: its sockets and their room memberships.
fn local_snapshot(shared: &Shared) -> LocalSnapshot {
    let mut snapshot = LocalSnapshot::default();
    let Some(main) = shared.io.of(MAIN) else {
        return snapshot;
    };
    let node_id = shared.app.server_id.clone();
    let mut records = shared.joined_rooms.lock();
    let mut still_joined = HashMap::new();
    for socket in main.local().sockets() {
        let Some(session) = Session::of(&socket) else {
            continue;
        };
        let socket_id = socket.id.to_string();
        snapshot.sockets.push(OnlineSocket {
            user_id: session.user_id().to_owned(),
            username: session.username(),
            socket_id: socket_id.clone(),
            node_id: node_id.clone(),
        });
        for room in socket.rooms() {
            let Some(room_id) = chat_room_id(&room) else {
                continue;
            };
            let Some(record) = records.get(room_id) else {
                continue;
            };
            still_joined.insert(room_id.to_owned(), record.clone());
            snapshot.memberships.push(LocalMembership {
                room: record.clone(),
                member: Member {
                    socket_id: socket_id.clone(),
                    user_id: session.user_id().to_owned(),
                    username: session.username(),
                    node_id: node_id.clone(),
                },
            });
        }
    }
    *records = still_joined;
    snapshot
}

/// Makes Redis hold exactly what this node holds again (after Redis came back, possibly empty):
/// presence, memberships and the bans it knows; then disconnects local users banned meanwhile
/// (a `user_banned` notice published while this node was cut off never reached it).
pub async fn resync(shared: &Shared) -> Result<(), cluster::StateError> {
    let Some(redis) = shared.app.link.redis() else {
        return Ok(());
    };
    let snapshot = local_snapshot(shared);
    // The cluster crate logs what the resync wrote.
    let report = redis.resync(&snapshot).await?;
    if report.purged_by_peers {
        announce_returns(shared, &snapshot).await;
    }
    sync_bans(shared).await
}

/// After peers purged this node (it stalled or was cut off while Redis stayed up) and it
/// registered again: they told every client that its users went offline and left their
/// rooms, so the users and memberships it still holds are announced again (`user online`,
/// `user joined`). A user with a socket on another node now is skipped: either the purge did
/// not announce it offline, or that node announced it online when it connected.
async fn announce_returns(shared: &Shared, snapshot: &LocalSnapshot) {
    let Some(main) = shared.io.of(MAIN) else {
        return;
    };
    let backends = &shared.app.backends;
    let users: HashMap<&str, &str> = snapshot
        .sockets
        .iter()
        .map(|s| (s.user_id.as_str(), s.username.as_str()))
        .collect();
    for (user_id, username) in users {
        match backends.presence.sockets_of(user_id).await {
            Ok(sockets) if sockets.iter().all(|s| s.node_id == shared.app.server_id) => {
                let payload = user_presence(user_id, username);
                let to = main.clone().except(user_room(user_id));
                let _ = emit::broadcast(shared, to, "user online", &payload).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, user = %user_id, "cannot announce a user back online")
            }
        }
    }
    // One count per room, however many of its members this node holds.
    let mut counts: HashMap<&str, Option<usize>> = HashMap::new();
    for m in &snapshot.memberships {
        let room_id = m.room.id.as_str();
        let count = match counts.get(room_id) {
            Some(known) => *known,
            None => {
                let count = backends.rooms.member_count(room_id).await;
                if let Err(e) = &count {
                    tracing::warn!(error = %e, room = %room_id, "cannot announce members back");
                }
                *counts.entry(room_id).or_insert(count.ok())
            }
        };
        let Some(count) = count else {
            continue;
        };
        let member = &m.member;
        let payload = room_member(
            &member.socket_id,
            &member.user_id,
            &member.username,
            room_id,
            count,
        );
        let to = main
            .clone()
            .to(chat_room(room_id))
            .except(member.socket_id.clone());
        let _ = emit::broadcast(shared, to, "user joined", &payload).await;
    }
}

/// A ban made through node `from`: remembered (so this node can write it back should Redis lose
/// it), and enforced on this node's sockets of the user.
pub async fn ban_from_peer(shared: &Shared, from: &str, ban: UserBanned) {
    tracing::info!(peer = from, user = %ban.user_id, "ban from another node");
    if let Some(redis) = shared.app.link.redis() {
        redis.remember_ban(cluster::Ban {
            user_id: ban.user_id.clone(),
            reason: ban.reason.clone(),
            banned_by: ban.banned_by.clone().unwrap_or_else(|| from.to_owned()),
            created_at: chrono::Utc::now(),
            expires_at: ban.expires_at,
        });
    }
    if let Err(e) = super::admin::enforce_ban_locally(shared, &ban.user_id, &ban.reason).await {
        tracing::warn!(error = %e, user = %ban.user_id, "cannot enforce a ban locally");
    }
}

/// A `system_announcement` from node `from` (the original design's control message), relayed
/// to this node's sockets of `/`.
pub async fn relay_announcement(shared: &Shared, from: &str, announcement: SystemAnnouncement) {
    let Some(main) = shared.io.of(MAIN) else {
        return;
    };
    let mut payload = announcement.extra.clone();
    payload.insert("message".to_owned(), Value::String(announcement.message));
    payload
        .entry("from".to_owned())
        .or_insert_with(|| Value::String(from.to_owned()));
    let _ = emit::broadcast(
        shared,
        main.local(),
        "system_announcement",
        &Value::Object(payload),
    )
    .await;
}
