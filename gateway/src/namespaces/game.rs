//! Namespace `/game` (PROTOCOL.md section 5): games are rooms `game:<gameId>`; every action gets
//! a cluster-wide sequence number and goes to the whole room, sender included.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;

use super::{Cx, GAME, Outcome, Reject, Session, Shared, emit, fields, now, on};
use crate::Adapter;
use crate::validation;

/// The Socket.IO room of a game.
pub fn game_room(game_id: &str) -> String {
    format!("game:{game_id}")
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
            let Some(session) = Session::of(&s) else {
                return;
            };
            let Some(op) = shared.io.of(GAME) else { return };
            for game in session.games() {
                let _ = emit::broadcast(
                    &shared,
                    op.clone().to(game_room(&game)).except(s.id),
                    "player disconnected",
                    &json!({ "playerId": s.id.to_string(), "gameId": game }),
                )
                .await;
            }
        }
    });
}

async fn join_game(cx: Cx, v: Value) -> Outcome {
    let game_id = validation::game_id(&v)?;
    cx.socket.join(game_room(&game_id));
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
    let game_id = validation::game_id(&v)?;
    if !cx.session.remove_game(&game_id) {
        return Err(Reject("You are not in this game".to_owned()));
    }
    cx.socket.leave(game_room(&game_id));
    Ok(fields([("gameId", Value::String(game_id))]))
}

async fn game_action(cx: Cx, v: Value) -> Outcome {
    let game_id = validation::game_action(&v)?;
    if !cx.session.in_game(&game_id) {
        return Err(Reject("You are not in this game".to_owned()));
    }
    let seq = cx.app().backends.games.next(&game_id).await?;
    let update = json!({
        "gameId": game_id,
        "playerId": cx.socket.id.to_string(),
        "action": v,
        "seq": seq,
        "timestamp": now(),
    });
    let op = cx
        .shared
        .io
        .of(GAME)
        .ok_or_else(|| Reject("Namespace unavailable".to_owned()))?;
    emit::broadcast(
        &cx.shared,
        op.to(game_room(&game_id)),
        "game update",
        &update,
    )
    .await
    .map_err(|_| Reject("Update could not be delivered".to_owned()))?;
    let mut ack = Map::new();
    ack.insert("seq".into(), json!(seq));
    Ok(ack)
}
