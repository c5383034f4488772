//! Bounds on the shared state one client can create (README, "Limits"): how many rooms and
//! games one socket may be in, and how long rooms, histories and game counters live once unused.

use std::time::Duration;

/// The settings, flattened into the node's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct StateLimits {
    /// Rooms of `/` one socket may be in at once.
    #[arg(long, env = "MAX_ROOMS_PER_SOCKET", default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms_per_socket: u32,
    /// Games of `/game` one socket may be in at once.
    #[arg(long, env = "MAX_GAMES_PER_SOCKET", default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_games_per_socket: u32,
    /// Rooms of `/` that may exist at once, cluster-wide: past it, `create room` is refused, so
    /// neither the state nor `get rooms` can grow without bound.
    #[arg(long, env = "MAX_ROOMS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms: u32,
    /// Rooms one user may have created that nobody has joined yet, cluster-wide (so one user
    /// cannot take all of `MAX_ROOMS`).
    #[arg(long, env = "MAX_UNJOINED_ROOMS_PER_USER", default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unjoined_rooms_per_user: u32,
    /// A room nobody joins is deleted this many seconds after its creation.
    #[arg(long, env = "UNJOINED_ROOM_TTL_SECS", default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub unjoined_room_ttl_secs: u64,
    /// A history (room, user pair, namespace) without a new message is deleted after this many
    /// seconds.
    #[arg(long, env = "HISTORY_TTL_SECS", default_value_t = 7 * 24 * 3600,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub history_ttl_secs: u64,
    /// A game's sequence counter without an action is deleted after this many seconds (the game
    /// then starts again at 1).
    #[arg(long, env = "GAME_SEQ_TTL_SECS", default_value_t = 24 * 3600,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub game_seq_ttl_secs: u64,
    /// Wrong room passwords one user may send per minute (cluster-wide) before further
    /// attempts are refused until the minute ends.
    #[arg(long, env = "ROOM_PASSWORD_FAILURES_PER_USER", default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub room_password_failures_per_user: u32,
    /// Wrong passwords one room may receive per minute (cluster-wide) before further attempts
    /// to join it with a password are refused until the minute ends.
    #[arg(long, env = "ROOM_PASSWORD_FAILURES_PER_ROOM", default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub room_password_failures_per_room: u32,
}

/// The window of the room password failure limits.
pub const PASSWORD_FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl StateLimits {
    /// The node's password guard with these limits, counting failures in `failures`.
    pub fn password_guard(
        &self,
        failures: std::sync::Arc<dyn cluster::failures::FailureCounters>,
    ) -> crate::password_guard::PasswordGuard {
        crate::password_guard::PasswordGuard::new(
            self.room_password_failures_per_user,
            self.room_password_failures_per_room,
            PASSWORD_FAILURE_WINDOW,
            failures,
        )
    }

    /// The retention times for the state backends.
    pub fn retention(&self) -> cluster::Retention {
        cluster::Retention {
            unjoined_room: Duration::from_secs(self.unjoined_room_ttl_secs),
            history: Duration::from_secs(self.history_ttl_secs),
            game_sequence: Duration::from_secs(self.game_seq_ttl_secs),
        }
    }

    /// The error for a socket that is in as many rooms as allowed.
    pub fn too_many_rooms(&self) -> String {
        format!(
            "Too many rooms: a connection may be in at most {} rooms",
            self.max_rooms_per_socket
        )
    }

    /// The error for a `create room` when as many rooms exist as allowed.
    pub fn too_many_rooms_exist(&self) -> String {
        format!(
            "Too many rooms exist (at most {}): try again later",
            self.max_rooms
        )
    }

    /// The error for a `create room` by a user with as many unjoined rooms as allowed.
    pub fn too_many_unjoined_rooms(&self) -> String {
        format!(
            "Too many rooms of yours that nobody has joined yet (at most {}): join one or wait until they expire",
            self.max_unjoined_rooms_per_user
        )
    }

    /// The error for a socket that is in as many games as allowed.
    pub fn too_many_games(&self) -> String {
        format!(
            "Too many games: a connection may be in at most {} games",
            self.max_games_per_socket
        )
    }
}
