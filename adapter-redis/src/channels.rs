//! Every Redis channel name this adapter uses, built in one place.
//!
//! With key prefix `socket.io` and namespace `/` (see the crate docs for the scheme):
//!
//! | purpose | channel |
//! |---|---|
//! | broadcast to the whole namespace or to several rooms | `socket.io#/#` |
//! | broadcast to exactly one room | `socket.io#/#<room>#` |
//! | socket-id rooms of this node (16-char ids) | pattern `socket.io#/#????????????????#` |
//! | requests | `socket.io-request#/#` |
//! | responses, shared | `socket.io-response#/#` |
//! | responses, for one node | `socket.io-response#/#<uid>#` |
//!
//! The sharded scheme (`ADAPTER_MODE=sharded`) has its own names: [`ShardedChannels`].

/// Length in bytes of a socketioxide socket id (and so of its room-channel segment).
pub const SID_LEN: usize = 16;

/// The channel names of one namespace under one key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceChannels {
    /// `<key>#<nsp>#`: namespace-wide broadcasts; also the prefix of room channels.
    pub broadcast: String,
    /// `<key>-request#<nsp>#`.
    pub request: String,
    /// `<key>-response#<nsp>#`.
    pub response: String,
}

impl NamespaceChannels {
    /// The channels of namespace `nsp` under `key`.
    pub fn new(key: &str, nsp: &str) -> Self {
        Self {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            response: format!("{key}-response#{nsp}#"),
        }
    }

    /// `<key>#<nsp>#<room>#`: broadcasts aimed at exactly one room.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.broadcast)
    }

    /// `<key>-response#<nsp>#<uid>#`: responses for one node.
    pub fn response_for(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// The glob pattern matching room channels whose room is exactly [`SID_LEN`] bytes long,
    /// which is how socket-id rooms (`io.to(socket_id)`) reach the node holding that socket.
    /// Glob metacharacters in the prefix or namespace are escaped.
    pub fn sid_room_pattern(&self) -> String {
        let mut pattern = glob_escape(&self.broadcast);
        pattern.push_str(&"?".repeat(SID_LEN));
        pattern.push('#');
        pattern
    }

    /// The glob pattern matching the namespace's broadcast channel and every room channel
    /// (`<key>#<nsp>#*`, as Node's classic adapter subscribes), for the pattern policy of the
    /// classic mode. Glob metacharacters in the prefix or namespace are escaped.
    pub fn all_rooms_pattern(&self) -> String {
        let mut pattern = glob_escape(&self.broadcast);
        pattern.push('*');
        pattern
    }

    /// Whether a room's channel is covered by [`Self::sid_room_pattern`] (then it must not be
    /// subscribed by name too, or each message would arrive twice).
    pub fn room_covered_by_pattern(room: &str) -> bool {
        room.len() == SID_LEN
    }

    /// What a channel is, for this namespace, or `None` if it is not one of its channels.
    pub fn classify<'a>(&self, channel: &'a str) -> Option<ChannelKind<'a>> {
        if let Some(rest) = channel.strip_prefix(self.broadcast.as_str()) {
            if rest.is_empty() {
                return Some(ChannelKind::Broadcast { room: None });
            }
            return rest
                .strip_suffix('#')
                .map(|room| ChannelKind::Broadcast { room: Some(room) });
        }
        if channel == self.request {
            return Some(ChannelKind::Request);
        }
        if channel.starts_with(self.response.as_str()) {
            return Some(ChannelKind::Response);
        }
        None
    }
}

/// The role of a channel inside a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind<'a> {
    /// A broadcast channel, with the room for single-room channels.
    Broadcast {
        /// The room of a `<key>#<nsp>#<room>#` channel.
        room: Option<&'a str>,
    },
    /// The request channel.
    Request,
    /// The shared or the per-node response channel.
    Response,
}

/// The namespace a channel belongs to, if it is one of ours under `key`.
/// Namespaces never contain `#` (the adapter refuses them), so the first `#` after the
/// prefix ends the namespace.
pub fn namespace_of<'a>(key: &str, channel: &'a str) -> Option<&'a str> {
    let rest = channel.strip_prefix(key)?;
    let rest = rest
        .strip_prefix('#')
        .or_else(|| rest.strip_prefix("-request#"))
        .or_else(|| rest.strip_prefix("-response#"))?;
    rest.split_once('#').map(|(nsp, _)| nsp)
}

/// The channel names of one namespace in the sharded scheme (Node's `createShardedAdapter`,
/// `docs/sharded-adapter.md` section 2.1). Every message of a namespace travels on one of
/// three kinds of shard channel, all under `<key>#<nsp>#`:
///
/// | purpose | channel |
/// |---|---|
/// | requests, and broadcasts not routed to a room | `<key>#<nsp>#` (the main channel) |
/// | answers to the server `<uid>` | `<key>#<nsp>#<uid>#` |
/// | single-room broadcasts, in the dynamic modes | `<key>#<nsp>#<room>#` |
///
/// A response channel and a room channel share one name space: a room named like a server
/// uid shares its channel ([`ShardedChannels::classify`] says which it is for this node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedChannels {
    /// `<key>#<nsp>#`: every server subscribes to it from start to close.
    pub main: String,
}

impl ShardedChannels {
    /// The sharded channels of namespace `nsp` under `key`.
    pub fn new(key: &str, nsp: &str) -> Self {
        Self {
            main: format!("{key}#{nsp}#"),
        }
    }

    /// `<key>#<nsp>#<uid>#`: where answers to the requests of server `uid` go.
    pub fn response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.main)
    }

    /// `<key>#<nsp>#<room>#`: single-room broadcasts in the dynamic modes (and, in
    /// `dynamic-private`, the channel of a socket id).
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.main)
    }

    /// What `channel` is for the server whose uid is `own_uid`, or `None` if it is not one of
    /// this namespace's channels.
    pub fn classify<'a>(&self, channel: &'a str, own_uid: &str) -> Option<ShardedChannelKind<'a>> {
        let rest = channel.strip_prefix(self.main.as_str())?;
        if rest.is_empty() {
            return Some(ShardedChannelKind::Main);
        }
        let name = rest.strip_suffix('#')?;
        Some(if name == own_uid {
            ShardedChannelKind::OwnResponse
        } else {
            ShardedChannelKind::Room(name)
        })
    }
}

/// The role of a sharded channel for one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardedChannelKind<'a> {
    /// `<key>#<nsp>#`.
    Main,
    /// `<key>#<nsp>#<own uid>#`: answers to this server's requests.
    OwnResponse,
    /// `<key>#<nsp>#<name>#` for any other name: a room (or socket id) channel, or another
    /// server's response channel.
    Room(&'a str),
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_node_adapter() {
        let ch = NamespaceChannels::new("socket.io", "/");
        assert_eq!(ch.broadcast, "socket.io#/#");
        assert_eq!(ch.room("room1"), "socket.io#/#room1#");
        assert_eq!(ch.request, "socket.io-request#/#");
        assert_eq!(ch.response, "socket.io-response#/#");
        assert_eq!(ch.response_for("OPaMk7"), "socket.io-response#/#OPaMk7#");
        assert_eq!(ch.sid_room_pattern(), "socket.io#/#????????????????#");
        assert_eq!(ch.all_rooms_pattern(), "socket.io#/#*");
    }

    #[test]
    fn classifies_and_routes_channels() {
        let ch = NamespaceChannels::new("socket.io", "/chat");
        assert_eq!(
            ch.classify("socket.io#/chat#"),
            Some(ChannelKind::Broadcast { room: None })
        );
        assert_eq!(
            ch.classify("socket.io#/chat#a#b#"),
            Some(ChannelKind::Broadcast { room: Some("a#b") })
        );
        assert_eq!(
            ch.classify("socket.io-request#/chat#"),
            Some(ChannelKind::Request)
        );
        assert_eq!(
            ch.classify("socket.io-response#/chat#x#"),
            Some(ChannelKind::Response)
        );
        assert_eq!(ch.classify("socket.io#/#"), None);
        assert_eq!(
            namespace_of("socket.io", "socket.io#/chat#r#"),
            Some("/chat")
        );
        assert_eq!(namespace_of("socket.io", "socket.io-request#/#"), Some("/"));
        assert_eq!(namespace_of("socket.io", "other#/#"), None);
    }

    #[test]
    fn sharded_names_match_nodes_sharded_adapter() {
        let ch = ShardedChannels::new("socket.io", "/");
        assert_eq!(ch.main, "socket.io#/#");
        assert_eq!(
            ch.response("8d5c3c2865859083"),
            "socket.io#/#8d5c3c2865859083#"
        );
        assert_eq!(ch.room("room1"), "socket.io#/#room1#");
        let chat = ShardedChannels::new("app", "/chat");
        assert_eq!(chat.room("room:1"), "app#/chat#room:1#");
    }

    #[test]
    fn sharded_channels_are_classified_for_one_server() {
        let ch = ShardedChannels::new("socket.io", "/chat");
        let own = "8d5c3c2865859083";
        assert_eq!(
            ch.classify("socket.io#/chat#", own),
            Some(ShardedChannelKind::Main)
        );
        assert_eq!(
            ch.classify("socket.io#/chat#8d5c3c2865859083#", own),
            Some(ShardedChannelKind::OwnResponse)
        );
        assert_eq!(
            ch.classify("socket.io#/chat#room:a#b#", own),
            Some(ShardedChannelKind::Room("room:a#b"))
        );
        assert_eq!(
            ch.classify("socket.io#/chat#74a21a952c0cefcb#", own),
            Some(ShardedChannelKind::Room("74a21a952c0cefcb"))
        );
        assert_eq!(ch.classify("socket.io#/#", own), None);
        assert_eq!(ch.classify("socket.io#/chat#unterminated", own), None);
    }

    #[test]
    fn pattern_escapes_glob_characters() {
        let ch = NamespaceChannels::new("a*b", "/[x]");
        assert!(ch.sid_room_pattern().starts_with("a\\*b#/\\[x\\]#?"));
        assert_eq!(ch.all_rooms_pattern(), "a\\*b#/\\[x\\]#*");
    }
}
