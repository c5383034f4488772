//! Per-socket state, kept in the socket's extensions: identity, display name, token bucket,
//! joined games, and the order in which the socket's events run and its broadcasts leave.
//!
//! Events of one socket are handled one after another, in arrival order: each admitted event
//! takes a [`Ticket`] (bounded backlog) and waits for the one before it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use socketioxide::socket::Socket;
use tokio::sync::{oneshot, watch};

use super::lock;
use crate::Adapter;
use crate::app::App;
use crate::auth::Identity;
use crate::event_limit::{EventLimiter, Verdict};

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
    /// Whether the socket got its CONNECT ack and entered the namespace.
    connected: watch::Sender<bool>,
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
            connected: watch::Sender::new(false),
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
        self.0.connected.send_replace(true);
    }

    /// Whether the socket ever entered the namespace.
    pub fn was_connected(&self) -> bool {
        *self.0.connected.borrow()
    }

    /// Waits until the socket entered the namespace, at most `within`. A client may send an
    /// event as soon as it reads the CONNECT ack, and socketioxide marks the socket connected
    /// only after sending that ack: in between it refuses every emit to the socket, so an
    /// answer sent then (the `error` event of a rejection) would be lost while its ack is not.
    /// The bound only matters for a socket whose CONNECT ack could not be sent.
    pub async fn entered(&self, within: std::time::Duration) {
        if self.was_connected() {
            return;
        }
        let mut connected = self.0.connected.subscribe();
        let _ = tokio::time::timeout(within, connected.wait_for(|c| *c)).await;
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

    /// Charges one event to the socket's token bucket.
    pub fn check_rate(&self) -> Verdict {
        lock(&self.0.limiter).check()
    }

    /// Takes this event's place in the socket's queue, unless the backlog is at its bound.
    pub fn enqueue(&self) -> Option<Ticket> {
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
    /// socket's next event started (see [`super::Cx::let_next_run`]).
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

/// Lets the socket's next event start; shared by an event's [`Ticket`] and its [`Cx`](super::Cx).
#[derive(Debug, Clone, Default)]
pub struct NextEvent(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl NextEvent {
    /// Lets the socket's next event start (once; later calls do nothing).
    pub fn release(&self) {
        lock(&self.0).take();
    }
}

/// An event's place in its socket's queue: wait for `previous`, and let the next event run (and
/// free a backlog slot) when dropped.
#[derive(Debug)]
pub struct Ticket {
    previous: Option<oneshot::Receiver<()>>,
    next: NextEvent,
    session: Session,
}

impl Ticket {
    /// Waits until the socket's previous event finished (or let this one start).
    pub async fn wait_turn(&mut self) {
        wait_for(&mut self.previous).await;
    }

    /// What lets the socket's next event start before this one is dropped.
    pub fn next(&self) -> NextEvent {
        self.next.clone()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.next.release();
        self.session.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
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

    #[tokio::test(start_paused = true)]
    async fn events_wait_until_the_socket_entered_its_namespace() {
        let s = session("40");
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { s.entered(std::time::Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "went on before the socket entered");
        s.mark_connected();
        waiting.await.unwrap();
        // Once entered, nothing waits; a socket that never enters waits at most the bound.
        s.entered(std::time::Duration::ZERO).await;
        let never = session("40");
        let started = tokio::time::Instant::now();
        never.entered(std::time::Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(5));
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
