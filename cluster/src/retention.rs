//! How long client-created state lives once unused: the retention times every backend applies.

/// How long state that clients create lives once nobody uses it, so no client can make shared
/// state grow without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A room nobody has joined is deleted this long after its creation.
    pub unjoined_room: std::time::Duration,
    /// A history scope (room, user pair, namespace) with no new message is forgotten after this.
    pub history: std::time::Duration,
    /// A game's sequence counter with no action is forgotten after this (the game then starts
    /// again at 1).
    pub game_sequence: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            unjoined_room: std::time::Duration::from_secs(600),
            history: std::time::Duration::from_secs(7 * 24 * 3600),
            game_sequence: std::time::Duration::from_secs(24 * 3600),
        }
    }
}
