//! Socket.IO namespaces: `/`, `/chat`, `/game`, `/admin` (PROTOCOL.md sections 2 to 6).
//!
//! Every namespace shares the admission middleware ([`admission`]), which also registers the
//! socket's event handlers: socketioxide awaits middlewares before it sends the CONNECT ack,
//! so a client's first event right after `connect` always finds its handler.
//!
//! Events of one socket are handled one after another, in arrival order (see [`Session`]), and
//! every event goes through [`on`]: metrics, the per-socket token bucket, the handler,
//! then exactly one ack (when the client asked for one) and an `error` event on rejection.

pub mod admin;
pub mod admission;
pub mod chat;
pub mod cluster_events;
pub mod emit;
pub mod game;
pub mod history_writer;
pub mod main_ns;
pub mod presence_guard;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Map, Value, json};
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use tokio::sync::oneshot;

use crate::app::App;
use crate::auth::Identity;
use crate::connection_limit::ConnectionLimiter;
use crate::event_limit::{EventLimiter, Verdict};
use crate::sanitize::Sanitizer;
use crate::validation::{self, Invalid};
use crate::{Adapter, Io};

/// Namespace paths.
pub const MAIN: &str = "/";
/// Chat namespace.
pub const CHAT: &str = "/chat";
/// Game namespace.
pub const GAME: &str = "/game";
/// Admin namespace.
pub const ADMIN: &str = "/admin";
/// Every namespace the gateway serves.
pub const ALL: [&str; 4] = [MAIN, CHAT, GAME, ADMIN];

/// The text of a rate-limited event or connection.
pub const RATE_LIMITED: &str = "Rate limit exceeded";

/// Why namespaces could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("namespace setup failed: {0}")]
pub struct NamespaceError(pub String);

/// What every handler of every namespace shares.
#[derive(Debug)]
pub struct Shared {
    /// Node state.
    pub app: Arc<App>,
    /// The Socket.IO server.
    pub io: Io,
    /// Content sanitiser from `BANNED_WORDS`.
    pub sanitizer: Sanitizer,
    /// Per-address connection limiter.
    pub connections: ConnectionLimiter,
    /// Per-game ordering of `game update`.
    pub game_locks: game::GameLocks,
    /// Records of the rooms this node's sockets joined, so a node can re-register them after
    /// Redis lost its data (see [`cluster_events`]).
    pub joined_rooms: cluster_events::JoinedRooms,
    /// Checks that admitted sockets entered `/`.
    pub presence_guard: presence_guard::PresenceGuard,
    /// Chat and room message history appends, pipelined.
    pub history_writer: history_writer::HistoryWriter,
    /// Who may spend argon2 time on room passwords, and how often.
    pub passwords: crate::password_guard::PasswordGuard,
}

/// Registers every namespace on `io`; returns what the handlers share, for the cluster event
/// reactions.
pub async fn register(io: &Io, app: &Arc<App>) -> Result<Arc<Shared>, NamespaceError> {
    let shared = Arc::new(Shared {
        app: Arc::clone(app),
        io: io.clone(),
        sanitizer: Sanitizer::new(&app.config.args.banned_words),
        connections: ConnectionLimiter::new(app.config.args.connection_rate_limit),
        game_locks: game::GameLocks::default(),
        joined_rooms: cluster_events::JoinedRooms::default(),
        presence_guard: presence_guard::PresenceGuard::default(),
        history_writer: history_writer::HistoryWriter::start(Arc::clone(&app.backends.history)),
        passwords: app.config.args.state_limits.password_guard(),
    });
    presence_guard::PresenceGuard::start(&shared);
    // Broadcasts from this node and from others go through one outgoing-queue policy.
    app.link
        .adapter()
        .set_delivery_observer(Arc::new(emit::QueuePolicy::new(&shared)));
    for ns in ALL {
        admission::register(&shared, ns)
            .await
            .map_err(|e| NamespaceError(format!("{ns}: {e}")))?;
    }
    Ok(shared)
}

/// Per-socket state, kept in the socket's extensions.
#[derive(Debug, Clone)]
pub struct Session(Arc<SessionInner>);

#[derive(Debug)]
struct SessionInner {
    identity: Identity,
    username: Mutex<String>,
    limiter: Mutex<EventLimiter>,
    /// The socket's events, in arrival order.
    events: OrderQueue,
    /// Broadcasts of events that let the next event start early, in arrival order.
    broadcasts: OrderQueue,
    /// Events admitted and not finished yet, bounded by `max_pending`.
    pending: AtomicUsize,
    max_pending: usize,
    slow: AtomicBool,
    connected: AtomicBool,
    games: Mutex<Vec<String>>,
}

impl Session {
    /// A session for an admitted socket.
    pub fn new(identity: Identity, app: &App) -> Self {
        let args = &app.config.args;
        Self(Arc::new(SessionInner {
            username: Mutex::new(identity.username.clone()),
            identity,
            limiter: Mutex::new(EventLimiter::new(
                args.event_rate_limit,
                args.event_rate_burst,
            )),
            events: OrderQueue::default(),
            broadcasts: OrderQueue::default(),
            pending: AtomicUsize::new(0),
            // The bucket already bounds arrivals; this bounds the backlog when handlers stall
            // (state backend slow): twice the burst, past which events are rate limited.
            max_pending: usize::try_from(args.event_rate_burst)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .max(64),
            slow: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            games: Mutex::new(Vec::new()),
        }))
    }

    /// The session of a socket (admitted sockets always have one).
    pub fn of(socket: &Socket<Adapter>) -> Option<Self> {
        socket.extensions.get::<Self>()
    }

    /// The authenticated identity.
    pub fn identity(&self) -> &Identity {
        &self.0.identity
    }

    /// The user id.
    pub fn user_id(&self) -> &str {
        &self.0.identity.user_id
    }

    /// Current display name of this socket.
    pub fn username(&self) -> String {
        lock(&self.0.username).clone()
    }

    /// Changes the display name of this socket.
    pub fn set_username(&self, name: String) {
        *lock(&self.0.username) = name;
    }

    /// Marks the socket as a slow client; `true` the first time.
    pub fn mark_slow(&self) -> bool {
        !self.0.slow.swap(true, Ordering::SeqCst)
    }

    /// Whether the socket is being disconnected as a slow client.
    pub fn is_slow(&self) -> bool {
        self.0.slow.load(Ordering::SeqCst)
    }

    /// Records that the socket got its CONNECT ack and entered the namespace.
    pub fn mark_connected(&self) {
        self.0.connected.store(true, Ordering::SeqCst);
    }

    /// Whether the socket ever entered the namespace.
    pub fn was_connected(&self) -> bool {
        self.0.connected.load(Ordering::SeqCst)
    }

    /// Remembers a game joined (for `player disconnected`).
    pub fn add_game(&self, game: &str) -> bool {
        let mut games = lock(&self.0.games);
        if games.iter().any(|g| g == game) {
            return false;
        }
        games.push(game.to_owned());
        true
    }

    /// Forgets a game; `true` when it was joined.
    pub fn remove_game(&self, game: &str) -> bool {
        let mut games = lock(&self.0.games);
        let before = games.len();
        games.retain(|g| g != game);
        games.len() != before
    }

    /// Whether the socket is in this game.
    pub fn in_game(&self, game: &str) -> bool {
        lock(&self.0.games).iter().any(|g| g == game)
    }

    /// The games joined.
    pub fn games(&self) -> Vec<String> {
        lock(&self.0.games).clone()
    }

    /// Removes and returns every game the socket is in (its departure is announced once).
    pub fn take_games(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.0.games))
    }

    fn check_rate(&self) -> Verdict {
        lock(&self.0.limiter).check()
    }

    /// Takes this event's place in the socket's queue, unless the backlog is at its bound.
    fn enqueue(&self) -> Option<Ticket> {
        if self.0.pending.fetch_add(1, Ordering::SeqCst) >= self.0.max_pending {
            self.0.pending.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let (previous, done) = self.0.events.take_place();
        Some(Ticket {
            previous,
            next: NextEvent(Arc::new(Mutex::new(Some(done)))),
            session: self.clone(),
        })
    }

    /// Takes the next place in the order of this socket's broadcasts that may finish after the
    /// socket's next event started (see [`Cx::let_next_run`]).
    pub fn broadcast_turn(&self) -> BroadcastTurn {
        let (previous, done) = self.0.broadcasts.take_place();
        BroadcastTurn {
            previous,
            _done: done,
        }
    }
}

/// A place in a socket's broadcast order: wait for the previous holder, broadcast, drop.
#[derive(Debug)]
pub struct BroadcastTurn {
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

impl BroadcastTurn {
    /// Waits until the broadcasts queued before this one are done (or abandoned).
    pub async fn wait(&mut self) {
        wait_for(&mut self.previous).await;
    }
}

/// A first-come order: each place is done when its sender is dropped, and the next place waits
/// for that.
#[derive(Debug, Default)]
struct OrderQueue(Mutex<Option<oneshot::Receiver<()>>>);

impl OrderQueue {
    /// Takes the last place: the completion of the place before it, and this place's own.
    fn take_place(&self) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, rx) = oneshot::channel();
        (lock(&self.0).replace(rx), done)
    }
}

/// Waits for the place before (once); an error only means its holder is gone (finished or
/// panicked).
async fn wait_for(previous: &mut Option<oneshot::Receiver<()>>) {
    if let Some(previous) = previous.take() {
        let _ = previous.await;
    }
}

/// Lets the socket's next event start; shared by an event's [`Ticket`] and its [`Cx`].
#[derive(Debug, Clone, Default)]
pub struct NextEvent(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl NextEvent {
    fn release(&self) {
        lock(&self.0).take();
    }
}

/// An event's place in its socket's queue: wait for `previous`, and let the next event run (and
/// free a backlog slot) when dropped.
#[derive(Debug)]
struct Ticket {
    previous: Option<oneshot::Receiver<()>>,
    next: NextEvent,
    session: Session,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.next.release();
        self.session.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// A rejected event: the text goes into the ack's `error` and the `error` event's `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject(pub String);

impl From<Invalid> for Reject {
    fn from(e: Invalid) -> Self {
        Self(e.0)
    }
}

impl From<cluster::StateError> for Reject {
    fn from(e: cluster::StateError) -> Self {
        tracing::warn!(error = %e, "cluster state unavailable while handling an event");
        Self("Service temporarily unavailable, please retry".to_owned())
    }
}

/// What a handler answers: extra ack fields on success, or a rejection.
pub type Outcome = Result<Map<String, Value>, Reject>;

/// What a handler gets about the event it handles.
#[derive(Debug, Clone)]
pub struct Cx {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The sender.
    pub socket: SocketRef<Adapter>,
    /// The sender's session.
    pub session: Session,
    /// Whether the sender wants an ack.
    pub ack_wanted: bool,
    /// The event name.
    pub event: &'static str,
    /// Lets the socket's next event start before this one finishes.
    next: NextEvent,
}

impl Cx {
    /// Lets the socket's next event start now, before this handler finishes. Whatever the
    /// handler does after this that must stay in arrival order has to take its own turn (for
    /// broadcasts, [`Session::broadcast_turn`], taken before this call).
    pub fn let_next_run(&self) {
        self.next.release();
    }

    /// The node state.
    pub fn app(&self) -> &App {
        &self.shared.app
    }
}

/// Builds an ack map from pairs.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The current time as an RFC 3339 UTC string.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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
            Err(Reject::from(validation::too_deep()))
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
                    wait_for(&mut t.previous).await;
                }
                let next = ticket.as_ref().map(|t| t.next.clone()).unwrap_or_default();
                let cx = Cx {
                    shared: Arc::clone(&shared),
                    socket: s.clone(),
                    session,
                    ack_wanted,
                    event,
                    next,
                };
                let checked = payload(data).and_then(|value| {
                    validation::payload_fits_cluster(&value)?;
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

/// Event names socket.io reserves; a client sending one is broken or hostile.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

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
            if RESERVED_EVENTS.contains(&name.as_str()) {
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

/// A disconnect handler that only keeps `socketio_connections_active` right (namespaces with no
/// other cleanup).
pub fn on_disconnect_count(shared: &Arc<Shared>, s: &SocketRef<Adapter>) {
    let shared = Arc::clone(shared);
    s.on_disconnect(move || {
        let shared = Arc::clone(&shared);
        async move {
            shared.app.metrics.connections_active.dec();
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Config};

    fn session(burst: &str) -> Session {
        let cli = Cli::try_parse_from(["gateway", "--dev", "--event-rate-burst", burst]).unwrap();
        let app = App::new(
            Config::from_args(cli.serve).unwrap(),
            cluster::memory::backends(10),
        )
        .unwrap();
        Session::new(
            Identity {
                user_id: "u".into(),
                username: "u".into(),
                role: "user".into(),
            },
            &app,
        )
    }

    #[tokio::test]
    async fn events_run_in_arrival_order() {
        let s = session("40");
        let mut first = s.enqueue().unwrap();
        let mut second = s.enqueue().unwrap();
        assert!(first.previous.take().is_none());
        let mut waiting = second.previous.take().unwrap();
        assert!(
            waiting.try_recv().is_err(),
            "second ran before first finished"
        );
        drop(first);
        assert!(waiting.await.is_err(), "first finished: the sender is gone");
    }

    #[test]
    fn backlog_is_bounded_at_twice_the_burst() {
        let s = session("50");
        let tickets: Vec<Ticket> = (0..100).map(|_| s.enqueue().unwrap()).collect();
        assert!(s.enqueue().is_none(), "101st pending event admitted");
        drop(tickets);
        assert!(s.enqueue().is_some(), "slots come back when events finish");
        // Never below 64, whatever the burst.
        let small = session("1");
        let held: Vec<Ticket> = (0..64).map(|_| small.enqueue().unwrap()).collect();
        assert!(small.enqueue().is_none());
        drop(held);
    }
}
