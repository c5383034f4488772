//! What the node holds to serve its sockets, below the use cases: the state every handler
//! shares ([`Shared`]), each socket's [`Session`], the context of one event ([`Cx`]), counted
//! delivery to sockets ([`emit`]), the history writer, and the tasks that serve them all.

pub mod emit;
pub mod event;
pub mod game_locks;
pub mod history_writer;
pub mod joined_rooms;
pub mod presence_checks;
pub mod session;
pub mod tasks;

use std::sync::{Arc, Mutex};

pub use event::{Cx, Outcome, Reject, fields};
pub use session::Session;

use crate::Io;
use crate::app::App;
use crate::connection_limit::ConnectionLimiter;
use crate::sanitize::Sanitizer;

/// What every handler of every namespace, every use case and every HTTP route shares.
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
    pub game_locks: game_locks::GameLocks,
    /// Records of the rooms this node's sockets joined, so a node can re-register them after
    /// Redis lost its data.
    pub joined_rooms: joined_rooms::JoinedRooms,
    /// Checks that admitted sockets entered `/`.
    pub presence_checks: presence_checks::PresenceChecks,
    /// Chat and room message history appends, pipelined.
    pub history_writer: history_writer::HistoryWriter,
    /// Who may spend argon2 time on room passwords, and how often.
    pub passwords: crate::password_guard::PasswordGuard,
    /// The node's long-lived tasks, so shutdown can stop them and wait for them.
    pub tasks: tasks::Tasks,
}

impl Shared {
    /// The shared state of a node serving `io`; starts the history writer (a tracked task).
    pub fn new(io: &Io, app: &Arc<App>) -> Arc<Self> {
        let tasks = tasks::Tasks::default();
        let history_writer =
            history_writer::HistoryWriter::start(Arc::clone(&app.backends.history), &tasks);
        Arc::new(Self {
            app: Arc::clone(app),
            io: io.clone(),
            sanitizer: Sanitizer::new(&app.config.args.banned_words),
            connections: ConnectionLimiter::new(app.config.args.connection_rate_limit),
            game_locks: game_locks::GameLocks::default(),
            joined_rooms: joined_rooms::JoinedRooms::default(),
            presence_checks: presence_checks::PresenceChecks::default(),
            history_writer,
            passwords: (app.config.args.state_limits)
                .password_guard(Arc::clone(&app.backends.failures)),
            tasks,
        })
    }
}

/// Locks `m`, recovering the data of a poisoned lock: every value guarded here stays valid
/// whatever step a panicking holder was at.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
