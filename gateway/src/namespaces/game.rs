//! Namespace `/game` (PROTOCOL.md section 5): games are rooms `game:<gameId>`; every action gets
//! a cluster-wide sequence number and goes to the whole room, sender included.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;

use super::{Cx, GAME, Outcome, Reject, Session, Shared, emit, fields, now, on};
use crate::Adapter;
use crate::protocol::payloads;
use crate::protocol::rooms::game_room;

/// One async lock per game, so that on this node the action that got `seq` n is emitted before
/// the one that got n + 1 (the sequence number and the emit are one step per game). Entries are
/// dropped once no action of that game is in flight, so the map holds only busy games.
#[derive(Debug, Default)]
pub struct GameLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl GameLocks {
    /// Runs `f` while holding the lock of `game_id`.
    pub async fn with<F, Fut, T>(&self, game_id: &str, f: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let lock = Arc::clone(
            self.map()
                .entry(game_id.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))),
        );
        let result = {
            let _guard = lock.lock().await;
            f().await
        };
        let mut map = self.map();
        // Two references: the map's and ours. Nobody else waits for it: forget the game.
        if Arc::strong_count(&lock) == 2 {
            map.remove(game_id);
        }
        result
    }

    /// Games with an action in flight.
    pub fn busy(&self) -> usize {
        self.map().len()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Registers the handlers of a `/game` socket.
pub fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on(s, shared, "join game", join_game);
    on(s, shared, "leave game", leave_game);
    on(s, shared, "game action", game_action);
    let for_disconnect = Arc::clone(shared);
    s.on_disconnect(move |s: SocketRef<Adapter>, _: DisconnectReason| {
        let shared = Arc::clone(&for_disconnect);
        async move {
            shared.app.metrics.connections_active.dec();
            depart(&shared, &s).await;
        }
    });
}

/// `player disconnected` to each game the socket was in (once, whichever comes first: the
/// disconnect, or a shutting-down node's [`depart_all`]).
async fn depart(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    let Some(session) = Session::of(s) else {
        return;
    };
    let Some(op) = shared.io.of(GAME) else { return };
    for game in session.take_games() {
        let _ = emit::broadcast(
            shared,
            op.clone().to(game_room(&game)).except(s.id),
            "player disconnected",
            &json!({ "playerId": s.id.to_string(), "gameId": game }),
        )
        .await;
    }
}

/// Announces the departure of every local `/game` socket while the namespace still exists (a
/// node that is shutting down), up to `in_flight` sockets at once (see
/// [`main_ns::depart_all`](super::main_ns::depart_all)).
pub async fn depart_all(shared: &Arc<Shared>, in_flight: usize) {
    let Some(op) = shared.io.of(GAME) else { return };
    futures_util::stream::iter(op.local().sockets())
        .for_each_concurrent(
            in_flight.max(1),
            |s| async move { depart(shared, &s).await },
        )
        .await;
}

async fn join_game(cx: Cx, v: Value) -> Outcome {
    let game_id = payloads::game_id(&v)?;
    let limits = &cx.app().config.args.state_limits;
    if !cx.session.in_game(&game_id)
        && cx.session.games().len() >= limits.max_games_per_socket as usize
    {
        cx.app().metrics.state_limit_refusals.inc();
        return Err(Reject(limits.too_many_games()));
    }
    let room = game_room(&game_id);
    cx.socket.join(room.clone());
    cx.shared
        .app
        .link
        .adapter()
        .sync_rooms_with(super::GAME, [room])
        .await;
    if cx.session.add_game(&game_id) {
        let _ = emit::broadcast(
            &cx.shared,
            cx.socket.to(game_room(&game_id)),
            "player joined",
            &json!({ "playerId": cx.socket.id.to_string(), "gameId": game_id }),
        )
        .await;
    }
    Ok(fields([("gameId", Value::String(game_id))]))
}

async fn leave_game(cx: Cx, v: Value) -> Outcome {
    let game_id = payloads::game_id(&v)?;
    if !cx.session.remove_game(&game_id) {
        return Err(Reject("You are not in this game".to_owned()));
    }
    cx.socket.leave(game_room(&game_id));
    Ok(fields([("gameId", Value::String(game_id))]))
}

async fn game_action(cx: Cx, v: Value) -> Outcome {
    let game_id = payloads::game_action(&v)?;
    if !cx.session.in_game(&game_id) {
        return Err(Reject("You are not in this game".to_owned()));
    }
    let op = cx
        .shared
        .io
        .of(GAME)
        .ok_or_else(|| Reject("Namespace unavailable".to_owned()))?;
    let seq = cx
        .shared
        .game_locks
        .with(&game_id, || async {
            let seq = cx.app().backends.games.next(&game_id).await?;
            let update = json!({
                "gameId": game_id,
                "playerId": cx.socket.id.to_string(),
                "action": v,
                "seq": seq,
                "timestamp": now(),
            });
            emit::broadcast(
                &cx.shared,
                op.to(game_room(&game_id)),
                "game update",
                &update,
            )
            .await
            .map_err(|_| Reject("Update could not be delivered".to_owned()))?;
            Ok::<u64, Reject>(seq)
        })
        .await?;
    let mut ack = Map::new();
    ack.insert("seq".into(), json!(seq));
    Ok(ack)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn actions_of_one_game_run_one_at_a_time_in_seq_order() {
        let locks = Arc::new(GameLocks::default());
        let seq = Arc::new(AtomicU64::new(0));
        let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (locks, seq, delivered) = (locks.clone(), seq.clone(), delivered.clone());
            tasks.push(tokio::spawn(async move {
                locks
                    .with("g", || async {
                        let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
                        // A yield between taking the number and delivering it is where an
                        // unlocked version reorders.
                        tokio::time::sleep(Duration::from_micros(50)).await;
                        delivered.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                    })
                    .await;
            }));
        }
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("task failed: {e}"));
        }
        let got = delivered.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(got, (1..=50).collect::<Vec<u64>>());
        assert_eq!(locks.busy(), 0, "idle games are forgotten");
    }
}
