//! The two steps every user message takes before it reaches anyone: sanitising, and storing
//! in history before the broadcast, in the sender's event order.

use cluster::HistoryScope;
use serde_json::Value;
use socketioxide::operators::BroadcastOperators;

use crate::Adapter;
use crate::sockets::{Cx, Reject, emit};

const EMPTY_AFTER_SANITISING: &str = "Message is empty after sanitising";

/// `content` with banned words masked and markup removed; refused when nothing is left.
pub fn sanitized(cx: &Cx, content: &str) -> Result<String, Reject> {
    cx.shared
        .sanitizer
        .clean(content)
        .ok_or_else(|| Reject(EMPTY_AFTER_SANITISING.to_owned()))
}

/// Stores `msg` in `scope`'s history, then broadcasts it through `op`. The append is only
/// queued before the socket's next event may start (see `crate::sockets::history_writer`); the broadcast waits
/// for its own append and for the socket's earlier broadcasts, so arrival order holds for both
/// history and receivers, and nothing is broadcast that was not stored.
pub async fn store_then_broadcast(
    cx: &Cx,
    scope: HistoryScope,
    op: BroadcastOperators<Adapter>,
    event: &str,
    msg: &Value,
) -> Result<(), Reject> {
    let stored = cx.shared.history_writer.append(scope, msg.clone()).await;
    let mut turn = cx.session.broadcast_turn();
    cx.let_next_run();
    stored.wait().await?;
    turn.wait().await;
    emit::broadcast(&cx.shared, op, event, msg)
        .await
        .map_err(|_| Reject("Message could not be delivered".to_owned()))
}
