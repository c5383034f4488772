//! Which wire a namespace speaks: the names and bytes of what it publishes, in the classic
//! wire (`@socket.io/redis-adapter`'s `createAdapter`) or the sharded one (its
//! `createShardedAdapter`, `docs/sharded-adapter.md`, sections 2 and 4). The adapter builds
//! classic requests, broadcasts and answers; in sharded mode they are carried as sharded
//! envelopes ([`Envelope::of_classic_request`], the answer constructors) on the channel
//! [`route`] names.

use std::time::Instant;

use crate::error::AdapterError;
use crate::locks::lock;
use crate::metrics::{Metrics, inc};
use crate::msgpack::Wire;
use crate::namespace::NsCore;
use crate::sharded_wire::{Destination, Envelope, ShardedNs, route, route_fenced};
use crate::wire::{self, FetchedSocket, Flags, Request, Target};

/// An answer to another node's request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer<'a> {
    /// To a `fetchSockets`.
    Fetch(&'a [FetchedSocket]),
    /// A server-side emit listener's answer.
    ServerSideAck(&'a Wire),
    /// The clients this node waits acks from, for a broadcast with acks.
    ClientCount(u64),
    /// One client's ack (its first argument).
    BroadcastAck(&'a Wire),
}

impl NsCore {
    /// The channel whose subscribers are this namespace's servers (`serverCount`).
    pub(crate) fn count_channel(&self) -> &str {
        match &self.sharded {
            None => &self.channels.request,
            Some(s) => &s.channels.main,
        }
    }

    /// The channels this namespace subscribes to from start to close.
    pub(crate) fn fixed_channels(&self) -> Vec<String> {
        match &self.sharded {
            // The broadcast channel matches the pattern policy's pattern: not named too, or
            // each of its messages would arrive twice.
            None if self.classic_pattern => vec![
                self.channels.request.clone(),
                self.channels.response.clone(),
                self.own_response.clone(),
            ],
            None => vec![
                self.channels.broadcast.clone(),
                self.channels.request.clone(),
                self.channels.response.clone(),
                self.own_response.clone(),
            ],
            Some(s) => vec![s.channels.main.clone(), s.channels.response(&self.uid)],
        }
    }

    /// The pattern this namespace subscribes to from start to close, classic mode only:
    /// every room channel with the pattern policy, else the socket-id rooms (16 characters).
    pub(crate) fn classic_pattern(&self) -> Option<String> {
        match &self.sharded {
            Some(_) => None,
            None if self.classic_pattern => Some(self.channels.all_rooms_pattern()),
            None => Some(self.channels.sid_room_pattern()),
        }
    }

    /// Whether rooms have channels of their own, subscribed by name where members are held.
    pub(crate) fn uses_room_channels(&self) -> bool {
        match &self.sharded {
            None => !self.classic_pattern,
            Some(s) => s.mode.uses_room_channels(),
        }
    }

    /// Whether `room`'s channel reaches this node through its pattern, so it is never
    /// subscribed by name (it would arrive twice). Sharded pub/sub has no patterns.
    pub(crate) fn room_covered_by_pattern(&self, room: &str) -> bool {
        self.sharded.is_none()
            && (self.classic_pattern
                || crate::channels::NamespaceChannels::room_covered_by_pattern(room))
    }

    /// Those of `rooms` subscribed by name (not covered by the classic pattern).
    pub(crate) fn rooms_with_channels(
        &self,
        rooms: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        rooms
            .into_iter()
            .filter(|r| !self.room_covered_by_pattern(r))
            .collect()
    }

    /// Whether each local socket's own id needs its channel subscribed: in the sharded dynamic
    /// modes, as the gateway's 16-character ids do not look like socket ids to Node's test, so
    /// `io.to(<id>)` goes on the id's channel (`docs/sharded-adapter.md`, sections 2.4 and 4.3).
    pub(crate) fn wants_socket_channels(&self) -> bool {
        self.sharded
            .as_ref()
            .is_some_and(|s| s.mode.uses_room_channels())
    }

    /// Starts the join fence for `rooms`, before the join naming them is published.
    pub(crate) fn fence_joins(&self, rooms: &[String]) {
        if self.join_fence.is_zero() || rooms.is_empty() {
            return;
        }
        crate::locks::lock(&self.fences).fence(
            rooms.iter().cloned(),
            std::time::Instant::now(),
            self.join_fence,
        );
    }

    /// The channel of one room's broadcasts.
    pub(crate) fn room_channel(&self, room: &str) -> String {
        match &self.sharded {
            None => self.channels.room(room),
            Some(s) => s.channels.room(room),
        }
    }

    /// Where a request goes, and its bytes.
    pub(crate) fn request_out(&self, request: Request) -> Result<(String, Vec<u8>), AdapterError> {
        let Some(sharded) = &self.sharded else {
            return Ok((self.channels.request.clone(), request.encode()));
        };
        let envelope = Envelope::of_classic_request(request, &self.nsp)
            .map_err(|e| AdapterError::Unsupported(e.to_string()))?;
        self.sharded_out(sharded, &envelope)
    }

    /// Where a broadcast without acks goes, and its bytes; a broadcast moved to the main
    /// channel by the join fence is counted in `metrics`.
    pub(crate) fn broadcast_out(
        &self,
        data: &Wire,
        target: &Target,
        flags: Flags,
        metrics: &Metrics,
    ) -> Result<(String, Vec<u8>), AdapterError> {
        let Some(sharded) = &self.sharded else {
            let channel = match target.rooms.as_slice() {
                [room] => self.channels.room(room),
                _ => self.channels.broadcast.clone(),
            };
            let bytes = wire::encode_broadcast(&self.uid, data, &self.nsp, target, flags);
            return Ok((channel, bytes));
        };
        let envelope =
            Envelope::broadcast(&self.uid, &self.nsp, data.clone(), target.clone(), flags);
        let now = Instant::now();
        let destination = match route(&envelope.message, sharded.mode) {
            // One of this gateway's socket ids (Node's test does not take 16 characters for
            // one): on the main channel, as Node sends its own socket ids in the dynamic mode,
            // so a request about that socket published next (a kick's `disconnect`) cannot
            // overtake it on another primary. Every receiver applies it from the main channel.
            Destination::Room(room) if is_gateway_socket_id(room) => Destination::Main,
            routed => {
                let fenced = route_fenced(&envelope.message, sharded.mode, |room| {
                    !self.join_fence.is_zero() && lock(&self.fences).is_fenced(room, now)
                });
                if fenced != routed {
                    inc(&metrics.join_fence_broadcasts);
                }
                fenced
            }
        };
        let channel = destination
            .channel(&sharded.channels, None)
            .ok_or_else(|| AdapterError::Encode("a broadcast routed as an answer".into()))?;
        let bytes = envelope
            .encode()
            .map_err(|e| AdapterError::Encode(e.to_string()))?;
        Ok((channel, bytes))
    }

    fn sharded_out(
        &self,
        sharded: &ShardedNs,
        envelope: &Envelope,
    ) -> Result<(String, Vec<u8>), AdapterError> {
        let channel = route(&envelope.message, sharded.mode)
            .channel(&sharded.channels, None)
            .ok_or_else(|| AdapterError::Encode("an answer without its requester".into()))?;
        let bytes = envelope
            .encode()
            .map_err(|e| AdapterError::Encode(e.to_string()))?;
        Ok((channel, bytes))
    }

    /// The channel and bytes of an answer to request `request_id` of the node `requester`.
    pub(crate) fn answer_out(
        &self,
        requester: Option<&str>,
        request_id: &str,
        answer: Answer<'_>,
    ) -> Result<(String, Vec<u8>), AdapterError> {
        let own = Some(self.uid.as_str());
        let Some(sharded) = &self.sharded else {
            let bytes = match answer {
                Answer::Fetch(sockets) => wire::fetch_response(request_id, sockets, own),
                Answer::ServerSideAck(data) => {
                    wire::server_side_ack_response(request_id, data, own)
                }
                Answer::ClientCount(n) => wire::client_count_response(request_id, n, own),
                Answer::BroadcastAck(packet) => {
                    wire::broadcast_ack_response(request_id, packet, own)
                }
            };
            return Ok((self.response_channel_for(requester), bytes));
        };
        let requester = requester
            .filter(|uid| !uid.is_empty())
            .ok_or_else(|| AdapterError::Encode("a sharded request without its sender".into()))?;
        let (uid, nsp) = (self.uid.as_str(), self.nsp.as_str());
        let envelope = match answer {
            Answer::Fetch(sockets) => Envelope::fetch_answer(uid, nsp, request_id, sockets),
            Answer::ServerSideAck(data) => {
                Envelope::server_side_emit_answer(uid, nsp, request_id, data.clone())
            }
            Answer::ClientCount(n) => Envelope::client_count_answer(uid, nsp, request_id, n),
            Answer::BroadcastAck(packet) => {
                Envelope::broadcast_ack_answer(uid, nsp, request_id, packet.clone())
            }
        };
        let bytes = envelope
            .encode()
            .map_err(|e| AdapterError::Encode(e.to_string()))?;
        Ok((sharded.channels.response(requester), bytes))
    }
}

/// Whether `room` is a socket id of this gateway (socketioxide's: 16 URL-safe base64
/// characters). Contract rooms (`room:<id>`, `user:<id>`, ...) never are, whatever their length.
fn is_gateway_socket_id(room: &str) -> bool {
    room.parse::<socketioxide_core::Sid>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateways_own_socket_ids_count_as_its_socket_ids() {
        assert!(is_gateway_socket_id(
            &socketioxide_core::Sid::new().to_string()
        ));
        assert!(is_gateway_socket_id("abcdefghijklmnop"));
        // Sixteen characters, but a contract room: it keeps its own channel.
        assert!(!is_gateway_socket_id("room:abcdefghijk"));
        assert!(!is_gateway_socket_id("user:abcdefghijk"));
        // A Node socket id (20 characters) and the empty room.
        assert!(!is_gateway_socket_id("t6NnwrlQGANncHSLAAAD"));
        assert!(!is_gateway_socket_id(""));
    }
}
