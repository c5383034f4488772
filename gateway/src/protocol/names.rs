//! Namespace and event names of the contract (docs/protocol.md, section "Namespaces and
//! events").

/// The main namespace.
pub const MAIN: &str = "/";
/// Chat namespace.
pub const CHAT: &str = "/chat";
/// Game namespace.
pub const GAME: &str = "/game";
/// Admin namespace (role `admin`).
pub const ADMIN: &str = "/admin";
/// Every namespace the gateway serves, in the order node statistics list them.
pub const ALL: [&str; 4] = [MAIN, CHAT, GAME, ADMIN];

/// Event names socket.io reserves; a client sending one is broken or hostile, and none may be
/// emitted through `POST /api/emit`.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Whether socket.io reserves `event`.
pub fn is_reserved(event: &str) -> bool {
    RESERVED_EVENTS.contains(&event)
}

/// The text of a rate-limited event or connection.
pub const RATE_LIMITED: &str = "Rate limit exceeded";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_events_are_socket_io_s_own() {
        assert!(is_reserved("connect"));
        assert!(is_reserved("removeListener"));
        assert!(!is_reserved("chat message"));
        assert!(!is_reserved("Connect"));
    }
}
