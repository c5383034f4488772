//! The Socket.IO room names of the contract, built and parsed back in one place
//! (docs/protocol.md, section "Rooms and Socket.IO room names"): emitters and Node.js peers
//! address these rooms by name, so a change here is a change of the wire contract.
//!
//! Each kind has its own prefix, so no client-chosen id can name another kind's room (a chat
//! room called `user:bob` is `room:user:bob`, never Bob's own room). A socket's own room is its
//! socket id, which holds no `:`.

/// Prefix of a chat room of `/`.
const CHAT_ROOM: &str = "room:";
/// Prefix of the room every socket of one user joins, in every namespace.
const USER_ROOM: &str = "user:";
/// Prefix of a game of `/game`.
const GAME_ROOM: &str = "game:";

/// The local room of sockets being disconnected as slow clients: every broadcast excludes it,
/// so once a frame to a socket is dropped, nothing after it reaches that socket (no silent gap).
/// Its prefix is none of the contract's, so no client id can name it.
pub const SLOW_CLIENTS: &str = "gateway:slow-clients";

/// The Socket.IO room of chat room `room_id` of `/`.
pub fn chat_room(room_id: &str) -> String {
    format!("{CHAT_ROOM}{room_id}")
}

/// The chat room id a Socket.IO room name stands for, if it is a chat room.
pub fn chat_room_id(room: &str) -> Option<&str> {
    room.strip_prefix(CHAT_ROOM)
}

/// The Socket.IO room every socket of `user_id` joins.
pub fn user_room(user_id: &str) -> String {
    format!("{USER_ROOM}{user_id}")
}

/// The user a Socket.IO room name stands for, if it is a user's room.
pub fn user_room_id(room: &str) -> Option<&str> {
    room.strip_prefix(USER_ROOM)
}

/// The Socket.IO room of game `game_id` of `/game`.
pub fn game_room(game_id: &str) -> String {
    format!("{GAME_ROOM}{game_id}")
}

/// The game a Socket.IO room name stands for, if it is a game.
pub fn game_room_id(room: &str) -> Option<&str> {
    room.strip_prefix(GAME_ROOM)
}

/// The history namespace of `/chat` messages: the namespace itself, or one of its rooms. A
/// namespace scope, kept apart from the main namespace's rooms (whose histories live and die
/// with the room) and from `/chat` itself (no namespace name holds `#`).
pub fn chat_history(room_id: Option<&str>) -> String {
    match room_id {
        Some(room) => format!("{}#{room}", super::names::CHAT),
        None => super::names::CHAT.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_contract_s() {
        assert_eq!(chat_room("lobby"), "room:lobby");
        assert_eq!(user_room("u1"), "user:u1");
        assert_eq!(game_room("g1"), "game:g1");
        assert_eq!(chat_history(None), "/chat");
        assert_eq!(chat_history(Some("r")), "/chat#r");
    }

    #[test]
    fn names_parse_back_to_their_ids() {
        for id in ["lobby", "", "a:b", "user:x", "é"] {
            assert_eq!(chat_room_id(&chat_room(id)), Some(id));
            assert_eq!(user_room_id(&user_room(id)), Some(id));
            assert_eq!(game_room_id(&game_room(id)), Some(id));
        }
    }

    #[test]
    fn kinds_never_read_as_each_other() {
        assert_eq!(chat_room_id(&user_room("u")), None);
        assert_eq!(chat_room_id(&game_room("g")), None);
        assert_eq!(user_room_id(&chat_room("user:bob")), None);
        assert_eq!(game_room_id(&chat_room("g")), None);
        assert_eq!(chat_room_id(SLOW_CLIENTS), None);
        // A socket's own room (its id) is no contract room.
        assert_eq!(chat_room_id("Jd8Kx2bQ3_aQ9xYzAAAB"), None);
    }
}
