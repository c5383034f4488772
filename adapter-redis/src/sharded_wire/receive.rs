//! One call per message from a shard channel: which channel it came on, decoding, Node's
//! ignore rules, and the classic kind to hand it to (`docs/sharded-adapter.md`, section 2.2).

use super::classic::ClassicForm;
use super::envelope::{Disposition, EnvelopeError, IgnoreReason};
use super::message::Envelope;
use crate::channels::{ShardedChannelKind, ShardedChannels};
use crate::wire::{BroadcastMessage, Request, Response};

/// What a server does with one message from a shard channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A broadcast from another server: deliver it to the selected local sockets.
    Broadcast(BroadcastMessage),
    /// A request from another server: apply it (and answer when its kind expects it).
    Request(Request),
    /// An answer to one of this server's requests: hand it to the request by `requestId`.
    Answer(Response),
    /// Dropped, as Node drops it.
    Ignored(IgnoreReason),
}

/// Reads `payload`, published on `channel`, for the server `own_uid` of the namespace whose
/// channels are `channels` and name is `nsp`. Only a payload that cannot be read at all is an
/// error (to be counted); a channel of another namespace is ignored like a message of one.
pub fn receive(
    channels: &ShardedChannels,
    own_uid: &str,
    nsp: &str,
    channel: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Result<Received, EnvelopeError> {
    let Some(kind) = channels.classify(channel, own_uid) else {
        return Ok(Received::Ignored(IgnoreReason::OtherNamespace));
    };
    let envelope = Envelope::decode_with_limit(payload, max_bytes)?;
    let on_own_response_channel = kind == ShardedChannelKind::OwnResponse;
    Ok(
        match envelope.disposition(on_own_response_channel, own_uid, nsp) {
            Disposition::Ignore(reason) => Received::Ignored(reason),
            Disposition::Apply | Disposition::Answer => match envelope.into_classic() {
                ClassicForm::Broadcast(broadcast) => Received::Broadcast(broadcast),
                ClassicForm::Request(request) => Received::Request(request),
                ClassicForm::Response(response) => Received::Answer(response),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::Wire;
    use crate::sharded_wire::{DEFAULT_MAX_ENVELOPE_BYTES, Message, Opts};
    use crate::wire::{Flags, Target, WireError};

    const OWN: &str = "8d5c3c2865859083";
    const PEER: &str = "74a21a952c0cefcb";

    fn rx(channel: &str, envelope: &Envelope) -> Result<Received, EnvelopeError> {
        let channels = ShardedChannels::new("socket.io", "/");
        let bytes = envelope.encode().unwrap();
        receive(
            &channels,
            OWN,
            "/",
            channel,
            &bytes,
            DEFAULT_MAX_ENVELOPE_BYTES,
        )
    }

    fn broadcast(uid: &str, nsp: &str) -> Envelope {
        Envelope::broadcast(
            uid,
            nsp,
            Wire::Array(vec![Wire::Str("ev".into())]),
            Target {
                rooms: vec!["room1".into()],
                except: vec![],
            },
            Flags::default(),
        )
    }

    #[test]
    fn broadcasts_requests_and_answers_come_out_as_their_classic_kinds() {
        assert!(matches!(
            rx("socket.io#/#room1#", &broadcast(PEER, "/")),
            Ok(Received::Broadcast(b)) if b.uid == PEER && b.target.rooms == ["room1"]
        ));
        let join = Envelope {
            uid: PEER.into(),
            nsp: "/".into(),
            message: Message::SocketsJoin {
                opts: Opts::default(),
                rooms: vec!["room3".into()],
            },
        };
        assert!(matches!(
            rx("socket.io#/#", &join),
            Ok(Received::Request(Request::JoinLeave { join: true, .. }))
        ));
        let count = Envelope::client_count_answer(PEER, "/", "r", 2);
        for channel in ["socket.io#/#8d5c3c2865859083#", "socket.io#/#"] {
            assert!(matches!(
                rx(channel, &count),
                Ok(Received::Answer(r)) if r.client_count() == Some(2) && r.uid.as_deref() == Some(PEER)
            ));
        }
    }

    #[test]
    fn what_node_ignores_is_ignored() {
        assert_eq!(
            rx("socket.io#/#", &broadcast(OWN, "/")),
            Ok(Received::Ignored(IgnoreReason::OwnMessage))
        );
        assert_eq!(
            rx("socket.io#/#", &broadcast(PEER, "/chat")),
            Ok(Received::Ignored(IgnoreReason::OtherNamespace))
        );
        assert_eq!(
            rx("socket.io#/#8d5c3c2865859083#", &broadcast(PEER, "/")),
            Ok(Received::Ignored(IgnoreReason::NotAnAnswer))
        );
        assert_eq!(
            rx("socket.io#/chat#", &broadcast(PEER, "/")),
            Ok(Received::Ignored(IgnoreReason::OtherNamespace))
        );
    }

    #[test]
    fn unreadable_payloads_are_errors_to_count() {
        let channels = ShardedChannels::new("socket.io", "/");
        let receive =
            |payload: &[u8], max| receive(&channels, OWN, "/", "socket.io#/#", payload, max);
        assert!(matches!(
            receive(b"{", 1024),
            Err(EnvelopeError::Wire(WireError::Json(_)))
        ));
        assert!(matches!(
            receive(&[0u8; 10], 9),
            Err(EnvelopeError::TooLarge { len: 10, max: 9 })
        ));
    }
}
