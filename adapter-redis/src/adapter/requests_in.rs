//! Requests from other nodes (`<key>-request#<nsp>#`): one function per request kind, each
//! applying the request to this node's sockets and answering when the kind expects an answer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, stream};
use socketioxide_core::Str;
use socketioxide_core::adapter::{AckStreamItem, BroadcastOptions, Room, SocketEmitter};
use socketioxide_core::packet::Packet;

use super::selection::Selection;
use super::values::{value_to_wire, wire_to_value};
use super::{RedisAdapter, Remote};
use crate::connection::Shared;
use crate::json;
use crate::locks::lock;
use crate::metrics::inc;
use crate::msgpack::Wire;
use crate::namespace::NsCore;
use crate::namespace_wire::Answer;
use crate::wire::{self, AckBroadcast, Request, Target, request_type};
use crate::{ServerSideAck, ServerSideEvent};

/// Longest ack timeout accepted from another node's broadcast-with-ack request.
const MAX_REMOTE_ACK_TIMEOUT: Duration = Duration::from_secs(3600);

impl Remote {
    /// Whether `uid` is this node (its own requests come back through Redis and are skipped).
    fn is_own(&self, uid: &Option<String>) -> bool {
        uid.as_deref() == Some(self.core.uid.as_str())
    }

    /// [`Self::is_own`], and otherwise notes the asker as alive: a request that asks for data
    /// tells us so (for the silent-peer report of `gather`).
    fn is_own_else_note_peer(&self, uid: &Option<String>) -> bool {
        if self.is_own(uid) {
            return true;
        }
        if let Some(uid) = uid {
            self.core.saw_peer(uid);
        }
        false
    }

    /// Sends an answer to the asker's own response channel when it named itself.
    fn answer(&self, uid: &Option<String>, response: Vec<u8>) {
        self.shared
            .publish_nowait(self.core.response_channel_for(uid.as_deref()), response);
    }

    /// Sends an answer in this namespace's wire to the asker's own response channel.
    fn answer_with(&self, uid: Option<&str>, request_id: &str, answer: Answer<'_>) {
        publish_answer(&self.shared, &self.core, uid, request_id, answer);
    }

    /// This node's uid, signed into every answer.
    fn own(&self) -> Option<&str> {
        Some(self.core.uid.as_str())
    }
}

impl<E: SocketEmitter> RedisAdapter<E> {
    pub(super) fn on_request(self: &Arc<Self>, remote: &Remote, payload: &[u8]) {
        let request = match Request::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                inc(&remote.shared.metrics.decode_errors);
                tracing::warn!(error = %e, nsp = %remote.core.nsp, "undecodable request from redis");
                return;
            }
        };
        self.apply_request(remote, request);
    }

    /// One request from another node, in the classic wire's kinds (the sharded wire's are
    /// converted to them).
    pub(super) fn apply_request(self: &Arc<Self>, remote: &Remote, request: Request) {
        match request {
            Request::Sockets {
                uid,
                request_id,
                rooms,
            } => self.answer_sockets(remote, uid, &request_id, rooms),
            Request::AllRooms {
                uid,
                request_id,
                target,
            } => self.answer_all_rooms(remote, uid, &request_id, target.as_ref()),
            Request::JoinLeave {
                join,
                uid,
                target,
                rooms,
            } => self.apply_join_leave(remote, uid, join, &target, rooms),
            Request::Disconnect { uid, target, .. } => {
                if !remote.is_own(&uid) {
                    self.disconnect_selection(self.select(&target, false));
                }
            }
            Request::Legacy {
                kind,
                request_id,
                sid,
                room,
                ..
            } => self.answer_legacy(remote, kind, &request_id, &sid, room),
            Request::Fetch {
                uid,
                request_id,
                target,
            } => self.answer_fetch(remote, uid, &request_id, &target),
            Request::ServerSideEmit {
                uid,
                request_id,
                data,
            } => {
                if !remote.is_own(&uid) {
                    self.on_server_side_emit(remote, uid, request_id, &data);
                }
            }
            // Another node's, answered by a task of its own.
            Request::BroadcastWithAck(request) => {
                if !remote.is_own(&request.uid) && request.nsp == remote.core.nsp {
                    self.start_broadcast_with_ack_answer(remote, request);
                }
            }
        }
    }

    /// Type 0 (legacy `sockets(rooms)`): the ids of the local sockets in `rooms`.
    fn answer_sockets(
        &self,
        remote: &Remote,
        uid: Option<String>,
        request_id: &str,
        rooms: Vec<String>,
    ) {
        if remote.is_own(&uid) {
            return;
        }
        let target = Target {
            rooms,
            except: Vec::new(),
        };
        let ids: Vec<String> = self
            .selected_sids(self.select(&target, false))
            .iter()
            .map(|s| s.to_string())
            .collect();
        remote.answer(
            &uid,
            wire::socket_ids_response(request_id, &ids, remote.own()),
        );
    }

    /// Type 1 (`allRooms()`): the rooms of the local sockets (of the selected ones, with the
    /// `opts` extension).
    fn answer_all_rooms(
        &self,
        remote: &Remote,
        uid: Option<String>,
        request_id: &str,
        target: Option<&Target>,
    ) {
        if remote.is_own_else_note_peer(&uid) {
            return;
        }
        let rooms: Vec<String> = self
            .local_rooms(target)
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        remote.answer(&uid, wire::rooms_response(request_id, &rooms, remote.own()));
    }

    /// Types 2 and 3 (`socketsJoin`, `socketsLeave`): no answer.
    fn apply_join_leave(
        &self,
        remote: &Remote,
        uid: Option<String>,
        join: bool,
        target: &Target,
        rooms: Vec<String>,
    ) {
        if remote.is_own(&uid) {
            return;
        }
        let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
        let joined = join.then(|| rooms.clone());
        match self.select(target, false) {
            Selection::Opts(opts) if join => self.local.add_sockets(*opts, rooms),
            Selection::Opts(opts) => self.local.del_sockets(*opts, rooms),
            Selection::Sids(sids) => {
                for sid in sids {
                    if join {
                        self.local.add_all(sid, rooms.clone());
                    } else {
                        self.local.del(sid, rooms.clone());
                    }
                }
            }
        }
        if let Some(rooms) = joined {
            self.note_remote_joins(remote, &rooms);
        }
        remote.core.sync_now.notify_one();
    }

    /// Types 2, 3 and 4 in the pre-v8 form: answered by the owner of the one socket named.
    fn answer_legacy(
        &self,
        remote: &Remote,
        kind: i64,
        request_id: &str,
        sid: &str,
        room: Option<String>,
    ) {
        let Some(sid) = self.is_local_sid(sid) else {
            return;
        };
        match (kind, room) {
            (request_type::REMOTE_JOIN, Some(room)) => {
                self.local.add_all(sid, Room::from(room));
                remote.core.sync_now.notify_one();
            }
            (request_type::REMOTE_LEAVE, Some(room)) => {
                self.local.del(sid, Room::from(room));
            }
            _ => self.disconnect_selection(Selection::Sids(vec![sid])),
        }
        remote.shared.publish_nowait(
            remote.core.channels.response.clone(),
            wire::legacy_ack_response(request_id, remote.own()),
        );
    }

    /// Type 5 (`fetchSockets`): the selected local sockets with their rooms.
    fn answer_fetch(
        &self,
        remote: &Remote,
        uid: Option<String>,
        request_id: &str,
        target: &Target,
    ) {
        if remote.is_own_else_note_peer(&uid) {
            return;
        }
        let sockets: Vec<wire::FetchedSocket> = self
            .selected_sids(self.select(target, false))
            .into_iter()
            .filter(|sid| {
                !self
                    .local
                    .fetch_sockets(BroadcastOptions::new(*sid))
                    .is_empty()
            })
            .map(|sid| {
                let mut rooms = vec![sid.to_string()];
                rooms.extend(
                    self.local
                        .socket_rooms(sid)
                        .into_iter()
                        .map(|r| r.to_string()),
                );
                wire::FetchedSocket {
                    id: sid.to_string(),
                    rooms,
                    issued_ms: 0,
                }
            })
            .collect();
        remote.answer_with(uid.as_deref(), request_id, Answer::Fetch(&sockets));
    }

    /// Type 6 (`serverSideEmit`): hands the event to the namespace's listener, if any.
    fn on_server_side_emit(
        &self,
        remote: &Remote,
        uid: Option<String>,
        request_id: Option<String>,
        data: &Wire,
    ) {
        let shared = &remote.shared;
        let sink = lock(&shared.sse_sinks).get(&remote.core.nsp).cloned();
        let Some(sink) = sink else {
            tracing::debug!(nsp = %remote.core.nsp, "server-side event without a listener");
            return;
        };
        let mut bins = Vec::new();
        let text = json::to_json(data, &mut bins);
        let Ok(serde_json::Value::Array(mut items)) =
            serde_json::from_str::<serde_json::Value>(&text)
        else {
            inc(&shared.metrics.decode_errors);
            return;
        };
        let event = match items.first() {
            Some(serde_json::Value::String(_)) => match items.remove(0) {
                serde_json::Value::String(s) => s,
                _ => return,
            },
            _ => {
                inc(&shared.metrics.decode_errors);
                return;
            }
        };
        let ack = request_id.map(|request_id| ServerSideAck {
            shared: shared.clone(),
            core: remote.core.clone(),
            requester: uid.clone(),
            request_id,
        });
        let event = ServerSideEvent {
            event,
            args: items,
            from: uid,
            ack,
        };
        if sink.try_send(event).is_err() {
            inc(&shared.metrics.dropped);
            tracing::warn!(nsp = %remote.core.nsp, "server-side event queue full: event dropped");
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// Type 7 (broadcast with acks): answered by its own task, at most
    /// `max_pending_requests` at once; past that the request is ignored and counted.
    fn start_broadcast_with_ack_answer(self: &Arc<Self>, remote: &Remote, request: AckBroadcast) {
        let core = &remote.core;
        let Some(permit) = core.ack_answers.clone().try_acquire_owned().ok() else {
            inc(&remote.shared.metrics.dropped);
            tracing::warn!(nsp = %core.nsp, "too many broadcast-with-ack requests in progress: one ignored");
            return;
        };
        let this = self.clone();
        let shared = remote.shared.clone();
        let core = remote.core.clone();
        remote.shared.spawn(async move {
            let _permit = permit;
            this.answer_broadcast_with_ack(&shared, &core, request)
                .await;
        });
    }

    /// Sends the client count (type 8), then one answer per client ack (type 9).
    async fn answer_broadcast_with_ack(
        &self,
        shared: &Shared,
        core: &NsCore,
        request: AckBroadcast,
    ) {
        let AckBroadcast {
            uid,
            request_id,
            data,
            target,
            flags,
            ..
        } = request;
        let packet = Packet::event(Str::from(core.nsp.clone()), wire_to_value(&data));
        let timeout = flags
            .timeout_ms
            .map(|ms| Duration::from_millis(ms).min(MAX_REMOTE_ACK_TIMEOUT));
        let (mut acks, count): (BoxStream<'static, AckStreamItem<E::AckError>>, u32) =
            match self.select(&target, flags.volatile) {
                Selection::Opts(opts) => {
                    let (s, n) = self.local.broadcast_with_ack(packet, *opts, timeout);
                    (s.boxed(), n)
                }
                Selection::Sids(sids) => {
                    let mut streams = Vec::new();
                    let mut total = 0;
                    for sid in sids {
                        let (s, n) = self.local.broadcast_with_ack(
                            packet.clone(),
                            Self::single(sid, flags.volatile),
                            timeout,
                        );
                        total += n;
                        streams.push(s.boxed());
                    }
                    (stream::select_all(streams).boxed(), total)
                }
            };
        publish_answer(
            shared,
            core,
            uid.as_deref(),
            &request_id,
            Answer::ClientCount(u64::from(count)),
        );
        while let Some((_sid, result)) = acks.next().await {
            let Ok(value) = result else { continue };
            let first = match value_to_wire(&value) {
                Ok(Wire::Array(mut items)) if !items.is_empty() => items.swap_remove(0),
                Ok(_) => Wire::Nil,
                Err(e) => {
                    tracing::debug!(error = %e, "ack value not expressible on the wire");
                    continue;
                }
            };
            publish_answer(
                shared,
                core,
                uid.as_deref(),
                &request_id,
                Answer::BroadcastAck(&first),
            );
        }
    }
}

/// Publishes an answer to the request `request_id` of the node `requester`, in `core`'s wire,
/// without waiting (a full publish queue drops it, counted).
pub(crate) fn publish_answer(
    shared: &Shared,
    core: &NsCore,
    requester: Option<&str>,
    request_id: &str,
    answer: Answer<'_>,
) {
    match core.answer_out(requester, request_id, answer) {
        Ok((channel, bytes)) => shared.publish_nowait(channel, bytes),
        Err(e) => {
            inc(&shared.metrics.publish_failures);
            tracing::warn!(error = %e, nsp = %core.nsp, "answer not published");
        }
    }
}
