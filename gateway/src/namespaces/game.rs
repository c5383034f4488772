//! Namespace `/game` (docs/protocol.md, section "Namespaces and events"): games are rooms
//! `game:<gameId>`; every action gets a cluster-wide sequence number and goes to the whole room,
//! sender included.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::SocketRef;

use super::dispatch::{on, on_disconnect};
use crate::Adapter;
use crate::actions::games;
use crate::protocol::payloads;
use crate::sockets::{Cx, Outcome, Shared};

/// Registers the handlers of a `/game` socket.
pub fn register_handlers(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on(s, shared, "join game", join_game);
    on(s, shared, "leave game", leave_game);
    on(s, shared, "game action", game_action);
    on_disconnect(shared, s, |shared, s, _| async move {
        shared.app.metrics.connections_active.dec();
        games::depart(&shared, &s).await;
    });
}

async fn join_game(cx: Cx, v: Value) -> Outcome {
    games::join(&cx, payloads::game_id(&v)?).await
}

async fn leave_game(cx: Cx, v: Value) -> Outcome {
    games::leave(&cx, payloads::game_id(&v)?).await
}

async fn game_action(cx: Cx, v: Value) -> Outcome {
    let game_id = payloads::game_action(&v)?;
    games::action(&cx, game_id, v).await
}
