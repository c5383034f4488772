//! Games of `/game` (docs/protocol.md, section "Namespaces and events"): games are rooms
//! `game:<gameId>`; every action gets a cluster-wide sequence number and goes to the whole
//! room, sender included.

use std::sync::Arc;

use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use socketioxide::extract::SocketRef;

use crate::Adapter;
use crate::protocol::names::GAME;
use crate::protocol::now;
use crate::protocol::rooms::game_room;
use crate::sockets::{Cx, Outcome, Reject, Session, Shared, emit, fields};

/// `player disconnected` to each game the socket was in (once, whichever comes first: the
/// disconnect, or a shutting-down node's [`depart_all`]).
/// A `/game` socket left: its games are told.
pub async fn depart(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
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
/// [`super::presence::depart_all`]).
pub async fn depart_all(shared: &Arc<Shared>, in_flight: usize) {
    let Some(op) = shared.io.of(GAME) else { return };
    futures_util::stream::iter(op.local().sockets())
        .for_each_concurrent(
            in_flight.max(1),
            |s| async move { depart(shared, &s).await },
        )
        .await;
}

/// `join game`: bounded per socket; `player joined` to the other players.
pub async fn join(cx: &Cx, game_id: String) -> Outcome {
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
        .sync_rooms_with(GAME, [room])
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

/// `leave game`.
pub async fn leave(cx: &Cx, game_id: String) -> Outcome {
    if !cx.session.remove_game(&game_id) {
        return Err(Reject("You are not in this game".to_owned()));
    }
    cx.socket.leave(game_room(&game_id));
    Ok(fields([("gameId", Value::String(game_id))]))
}

/// `game action`: a cluster-wide sequence number, then `game update` to the whole game,
/// sender included. `action` is the whole payload.
pub async fn action(cx: &Cx, game_id: String, action: Value) -> Outcome {
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
                "action": action,
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
