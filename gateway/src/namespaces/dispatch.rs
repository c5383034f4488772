//! How every event of every namespace is dispatched: counted, charged to the socket's token
//! bucket and bounded backlog, run after the socket's previous event, then answered with
//! exactly one ack (when the client asked for one) and an `error` event on rejection.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::{DisconnectReason, Socket};

use crate::Adapter;
use crate::event_limit::Verdict;
use crate::protocol::names::{RATE_LIMITED, is_reserved};
use crate::protocol::payloads;
use crate::sockets::session::Ticket;
use crate::sockets::{Cx, Outcome, Reject, Session, Shared, emit};

/// Whether the client asked for an ack (extractor).
#[derive(Debug, Clone, Copy)]
pub struct AckWanted(pub bool);

impl FromMessageParts<Adapter> for AckWanted {
    type Error = Infallible;
    fn from_message_parts(
        _: &Arc<Socket<Adapter>>,
        _: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Self(ack_id.is_some()))
    }
}

/// The payload of an event: its first argument, `Null` when it has none, an error when it cannot
/// be read as JSON (binary attachments, for instance).
fn payload(data: Result<Value, socketioxide::ParserError>) -> Result<Value, Reject> {
    match data {
        Ok(v) => Ok(v),
        // How socketioxide's parser reports an event sent with no argument (`emit("get rooms")`).
        Err(e) if e.to_string().contains("first element not found") => Ok(Value::Null),
        // serde_json's own nesting limit (128), far past the gateway's.
        Err(e) if e.to_string().contains("recursion limit exceeded") => {
            Err(Reject::from(payloads::too_deep()))
        }
        Err(e) => {
            tracing::debug!(error = %e, "undecodable event payload");
            Err(Reject("Invalid payload: expected JSON data".to_owned()))
        }
    }
}

/// Registers `handler` for `event` on a socket: counts it, applies the token bucket and the
/// backlog bound, runs it after the socket's previous event, then acks or rejects it.
pub fn on<F, Fut>(
    socket: &SocketRef<Adapter>,
    shared: &Arc<Shared>,
    event: &'static str,
    handler: F,
) where
    F: Fn(Cx, Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let shared = Arc::clone(shared);
    socket.on(
        event,
        move |s: SocketRef<Adapter>,
              AckWanted(ack_wanted): AckWanted,
              ack: AckSender<Adapter>,
              TryData(data): TryData<Value>| {
            // This part runs synchronously in arrival order; the rest is spawned.
            let shared = Arc::clone(&shared);
            let handler = handler.clone();
            let session = Session::of(&s);
            shared.app.metrics.messages_received.inc();
            let mut verdict = session.as_ref().map(Session::check_rate);
            // Only events that will run take a place in the queue, so a rejected event never
            // lets a later one overtake an earlier one.
            let ticket = session
                .as_ref()
                .filter(|_| verdict == Some(Verdict::Allowed))
                .and_then(Session::enqueue);
            if verdict == Some(Verdict::Allowed) && ticket.is_none() {
                verdict = Some(Verdict::Limited);
            }
            async move {
                let Some(session) = session else {
                    // Never happens for admitted sockets; refuse rather than panic.
                    reply_rejected(&shared, &s, ack, ack_wanted, event, "Not authenticated");
                    return;
                };
                // Whatever the answer, it can only be sent once the socket is connected.
                session.entered(shared.app.config.connect_timeout()).await;
                match verdict {
                    Some(Verdict::Allowed) => {}
                    Some(Verdict::Flooding) => {
                        reply_rejected(&shared, &s, ack, ack_wanted, event, RATE_LIMITED);
                        tracing::warn!(socket = %s.id, user = session.user_id(), "flooding socket disconnected");
                        emit::disconnect(&shared, &s);
                        return;
                    }
                    _ => {
                        reply_rejected(&shared, &s, ack, ack_wanted, event, RATE_LIMITED);
                        return;
                    }
                }
                let mut ticket = ticket;
                if let Some(t) = ticket.as_mut() {
                    t.wait_turn().await;
                }
                let next = ticket.as_ref().map(Ticket::next).unwrap_or_default();
                let cx = Cx {
                    shared: Arc::clone(&shared),
                    socket: s.clone(),
                    session,
                    ack_wanted,
                    event,
                    next,
                };
                let checked = payload(data).and_then(|value| {
                    payloads::payload_fits_cluster(&value)?;
                    Ok(value)
                });
                let outcome = match checked {
                    Ok(value) => handler(cx, value).await,
                    Err(reject) => Err(reject),
                };
                match outcome {
                    Ok(mut extra) => {
                        if ack_wanted {
                            let mut body = Map::new();
                            body.insert("success".into(), Value::Bool(true));
                            body.append(&mut extra);
                            emit::ack(&shared, &s, ack, &Value::Object(body));
                        }
                    }
                    Err(Reject(message)) => {
                        reply_rejected(&shared, &s, ack, ack_wanted, event, &message);
                    }
                }
            }
        },
    );
}

/// Counts and rate-limits events no handler knows (socket.io ignores them otherwise), so a
/// flood of unknown events still gets the socket disconnected. A reserved event name is a
/// protocol error, as in socket.io 4.x: the socket is disconnected.
pub fn on_unknown(socket: &SocketRef<Adapter>, shared: &Arc<Shared>) {
    let shared = Arc::clone(shared);
    socket.on_fallback(move |s: SocketRef<Adapter>, Event(name): Event| {
        shared.app.metrics.messages_received.inc();
        let verdict = Session::of(&s).map(|session| session.check_rate());
        let shared = Arc::clone(&shared);
        async move {
            if is_reserved(&name) {
                shared.app.metrics.message_errors.inc();
                tracing::info!(socket = %s.id, event = name, "reserved event name: disconnecting");
                emit::disconnect(&shared, &s);
                return;
            }
            match verdict {
                Some(Verdict::Flooding) => {
                    shared.app.metrics.message_errors.inc();
                    tracing::warn!(socket = %s.id, "flooding socket disconnected");
                    emit::disconnect(&shared, &s);
                }
                Some(Verdict::Limited) => {
                    shared.app.metrics.message_errors.inc();
                }
                _ => {
                    tracing::debug!(socket = %s.id, event = name, "event without a handler ignored")
                }
            }
        }
    });
}

/// Answers a rejected event: `error` `{ event, message }`, and the ack `{ success: false, error }`.
fn reply_rejected(
    shared: &Shared,
    socket: &SocketRef<Adapter>,
    ack: AckSender<Adapter>,
    ack_wanted: bool,
    event: &str,
    message: &str,
) {
    shared.app.metrics.message_errors.inc();
    emit::to_socket(
        shared,
        socket,
        "error",
        &json!({ "event": event, "message": message }),
    );
    if ack_wanted {
        emit::ack(
            shared,
            socket,
            ack,
            &json!({ "success": false, "error": message }),
        );
    }
}

/// Registers `cleanup` for when a socket of the namespace disconnects. It is called at once with
/// the node's shared state, the socket and the reason; the future it returns runs in a task of
/// its own (socketioxide spawns it), so what must be read before the socket's rooms are gone is
/// read in the call itself.
pub fn on_disconnect<F, Fut>(shared: &Arc<Shared>, s: &SocketRef<Adapter>, cleanup: F)
where
    F: Fn(Arc<Shared>, SocketRef<Adapter>, DisconnectReason) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shared = Arc::clone(shared);
    s.on_disconnect(move |s: SocketRef<Adapter>, reason: DisconnectReason| {
        // The socket's rooms and own id, read now for the same reason: once the cleanup ran,
        // the channels only this socket held are unsubscribed at once (cluster mode with
        // per-room subscriptions) instead of at the adapter's next comparison.
        let mut held: Vec<String> = s.rooms().into_iter().map(|r| r.to_string()).collect();
        held.push(s.id.to_string());
        let (ns, sid) = (s.ns().to_owned(), s.id.to_string());
        let adapter = shared.app.link.adapter().clone();
        let cleanup = cleanup(Arc::clone(&shared), s, reason);
        async move {
            cleanup.await;
            adapter.release_rooms(&ns, &sid, held).await;
        }
    });
}

/// A disconnect handler that only keeps `socketio_connections_active` right (namespaces with no
/// other cleanup).
pub fn on_disconnect_count(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    on_disconnect(shared, s, |shared, _, _| async move {
        shared.app.metrics.connections_active.dec();
    });
}
