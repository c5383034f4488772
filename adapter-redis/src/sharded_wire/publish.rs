//! One call per message this server sends: where it goes ([`route_fenced`]) and its bytes.

use super::envelope::EncodeError;
use super::message::Envelope;
use super::route::{SubscriptionMode, route_fenced};
use crate::channels::ShardedChannels;

/// A message ready for `SPUBLISH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The shard channel.
    pub channel: String,
    /// The encoded envelope.
    pub payload: Vec<u8>,
}

/// Why a message cannot be published.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// An answer (types 8, 10, 11, 12) without the uid of the server that asked.
    #[error("an answer needs the requester's uid")]
    NoRequester,
    /// The message cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// The channel and bytes of `envelope` in `mode`: Node's routing (section 2.4) with the join
/// fence (`fenced(room)`, section 3; `|_| false` for none); answers go to the response channel
/// of `requester_uid`, the uid of the request's envelope.
pub fn publish(
    channels: &ShardedChannels,
    envelope: &Envelope,
    mode: SubscriptionMode,
    requester_uid: Option<&str>,
    fenced: impl FnOnce(&str) -> bool,
) -> Result<Outgoing, PublishError> {
    let channel = route_fenced(&envelope.message, mode, fenced)
        .channel(channels, requester_uid)
        .ok_or(PublishError::NoRequester)?;
    Ok(Outgoing {
        channel,
        payload: envelope.encode()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::Wire;
    use crate::wire::{Flags, Target};

    #[test]
    fn broadcasts_and_answers_are_addressed_and_encoded() {
        let channels = ShardedChannels::new("socket.io", "/");
        let to_room = Envelope::broadcast(
            "a",
            "/",
            Wire::Array(vec![Wire::Str("ev".into())]),
            Target {
                rooms: vec!["room:1".into()],
                except: vec![],
            },
            Flags::default(),
        );
        let out = publish(&channels, &to_room, SubscriptionMode::Dynamic, None, |_| {
            false
        })
        .unwrap();
        assert_eq!(out.channel, "socket.io#/#room:1#");
        assert_eq!(out.payload, to_room.encode().unwrap());
        let fenced = publish(&channels, &to_room, SubscriptionMode::Dynamic, None, |r| {
            r == "room:1"
        })
        .unwrap();
        assert_eq!(fenced.channel, "socket.io#/#");

        let answer = Envelope::client_count_answer("b", "/", "r", 0);
        assert_eq!(
            publish(&channels, &answer, SubscriptionMode::Static, None, |_| {
                false
            }),
            Err(PublishError::NoRequester)
        );
        let out = publish(
            &channels,
            &answer,
            SubscriptionMode::Static,
            Some("a"),
            |_| false,
        )
        .unwrap();
        assert_eq!(out.channel, "socket.io#/#a#");
    }

    #[test]
    fn what_json_cannot_hold_is_an_error_not_an_empty_message() {
        // A map key that is an array: possible only in msgpack from a peer, and without binary
        // the envelope is JSON.
        let odd = Envelope::server_side_emit_answer(
            "b",
            "/",
            "r",
            Wire::Map(vec![(Wire::Array(vec![]), Wire::Nil)]),
        );
        let channels = ShardedChannels::new("socket.io", "/");
        assert!(matches!(
            publish(
                &channels,
                &odd,
                SubscriptionMode::Dynamic,
                Some("a"),
                |_| false
            ),
            Err(PublishError::Encode(EncodeError::Json(_)))
        ));
    }
}
